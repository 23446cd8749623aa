package main

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
)

// helperEnv makes the test binary, started again by
// TestMemProfileRateFollowsPprof, report what its package initialisers set.
const helperEnv = "GATEHOUSE_TEST_MEMPROFILE_HELPER"

var sink [][]byte

// TestMemProfileHelper is not a test of its own: run by
// TestMemProfileRateFollowsPprof, it prints the heap profile's sampling rate
// as this package's initialisers left it, and whether a heap profile then
// records the allocations made.
func TestMemProfileHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("run by TestMemProfileRateFollowsPprof")
	}
	rate := runtime.MemProfileRate
	for range 2000 {
		sink = append(sink, make([]byte, 4096))
	}
	runtime.GC() // a heap profile shows allocations as of the last collection
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("rate=" + strconv.Itoa(rate) + " sampled=" + strconv.FormatBool(strings.Contains(buf.String(), "TestMemProfileHelper")) + "\n")
}

// TestMemProfileRateFollowsPprof: the binary samples nothing for the heap
// profile unless GATEHOUSE_PPROF=1, and with it the heap profile works.
func TestMemProfileRateFollowsPprof(t *testing.T) {
	for _, c := range []struct {
		pprof, want string
	}{
		// Off, a P may still sample once: its countdown to the next
		// sample was drawn at the old rate. So only the rate is checked.
		{"", "rate=0 "},
		{"0", "rate=0 "},
		{"1", "rate=" + strconv.Itoa(512*1024) + " sampled=true\n"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemProfileHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1", "GATEHOUSE_PPROF="+c.pprof)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GATEHOUSE_PPROF=%q: %v\n%s", c.pprof, err, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("GATEHOUSE_PPROF=%q: %s, want %q", c.pprof, out, c.want)
		}
	}
}
