package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Metrics configures GET /metrics on the admin listener (package metrics).
type Metrics struct {
	// PerKeyLabels adds per-key series (gatehouse_key_*): one per key, so off
	// by default.
	PerKeyLabels bool `yaml:"per_key_labels"`
	// TokenFile holds a bearer token that a scrape must present; empty: the
	// metrics are open to whoever reaches the admin listener.
	// GATEHOUSE_METRICS_TOKEN sets the token itself and wins.
	TokenFile string `yaml:"token_file"`
}

// Token returns the scrape token from GATEHOUSE_METRICS_TOKEN or TokenFile.
func (m Metrics) Token(getenv func(string) string) (string, error) {
	if t := strings.TrimSpace(getenv("GATEHOUSE_METRICS_TOKEN")); t != "" {
		return t, nil
	}
	if m.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(m.TokenFile)
	if err != nil {
		return "", fmt.Errorf("metrics.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 {
		return "", errors.New("metrics.token_file: the token must be at least 16 characters")
	}
	return t, nil
}

// Telemetry configures OpenTelemetry traces (package telemetry). The exporter
// itself (endpoint, protocol, headers, TLS) is configured by the standard
// OTEL_* environment variables.
type Telemetry struct {
	// Traces turns tracing on. Setting OTEL_TRACES_EXPORTER=otlp or an
	// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT does too; OTEL_SDK_DISABLED=true
	// or OTEL_TRACES_EXPORTER=none turns it off.
	Traces bool `yaml:"traces"`
}
