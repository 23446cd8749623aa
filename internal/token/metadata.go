package token

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// MetadataPath is where RFC 8414 puts authorization server metadata for an
// issuer without a path.
const MetadataPath = "/.well-known/oauth-authorization-server"

// Paths of the endpoints the metadata names, on the data plane.
const (
	TokenPath = "/v1/auth/token"
	JWKSPath  = "/.well-known/jwks.json"
)

// AuthMethods are the token endpoint's client authentication methods: the
// key as client_secret, in HTTP Basic (form-urlencoded per RFC 6749 §2.3.1,
// or raw) or in the form.
var AuthMethods = []string{"client_secret_basic", "client_secret_post"}

// GrantTypes are the grants the token endpoint serves.
var GrantTypes = []string{GrantClientCredentials, GrantTokenExchange}

// IssuerURL reports whether iss is usable as an RFC 8414 issuer identifier: an
// http or https URL with a host and no query or fragment.
func IssuerURL(iss string) bool {
	u, err := url.Parse(iss)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
}

// Metadata is the RFC 8414 document of the token endpoint. When the tokens'
// issuer is a URL it is the issuer and the base of every endpoint, and the
// document equals for every request; otherwise (the default "gatehouse") the
// base URL the request addressed stands in as issuer, so that discovery works,
// while tokens keep iss "gatehouse" (see docs/identity.md).
func (e *Endpoint) Metadata(r *http.Request) map[string]any {
	iss := e.Issuer.Name()
	if !IssuerURL(iss) {
		iss = e.baseURL(r)
	}
	base := strings.TrimRight(iss, "/")
	return map[string]any{
		"issuer":                                iss,
		"token_endpoint":                        base + TokenPath,
		"jwks_uri":                              base + JWKSPath,
		"grant_types_supported":                 GrantTypes,
		"token_endpoint_auth_methods_supported": AuthMethods,
		"dpop_signing_alg_values_supported":     ProofAlgs,
		"scopes_supported":                      vkey.Endpoints,
		// No authorization endpoint: no response type is supported.
		"response_types_supported": []string{},
		"service_documentation":    "https://github.com/gatehouse-gw/gatehouse/blob/main/docs/identity.md",
	}
}

// ServeMetadata serves the metadata document at MetadataPath and, for an
// issuer URL with a path (a gateway behind a path prefix), also where RFC 8414
// §3.1 puts it: MetadataPath followed by that path.
func (e *Endpoint) ServeMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != MetadataPath {
		u, err := url.Parse(e.Issuer.Name())
		if !IssuerURL(e.Issuer.Name()) || err != nil || strings.TrimRight(u.Path, "/") == "" || r.URL.Path != MetadataPath+strings.TrimRight(u.Path, "/") {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "not_found", "error_description": "no metadata here; see " + MetadataPath})
			return
		}
	}
	if IssuerURL(e.Issuer.Name()) {
		w.Header().Set("Cache-Control", "public, max-age=300")
	} else {
		w.Header().Set("Cache-Control", "no-store") // it names the host the request did
	}
	json.NewEncoder(w).Encode(e.Metadata(r))
}

// baseURL is the scheme and host the request addressed.
func (e *Endpoint) baseURL(r *http.Request) string {
	u, err := url.Parse(e.URL(r))
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
