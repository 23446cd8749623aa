package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runChild runs the gatehouse command in a child process to its end and
// returns its exit code and output.
func runChild(t *testing.T, args ...string) (int, string) {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgs+"="+string(a), "GATEHOUSE_LOG_LEVEL=warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// TestSecondServeOnOneDataDir: `gatehouse serve` on the data directory of a
// running gateway (another process) fails at start with an error that names
// the directory and the running gateway's pid; `kek rotate` refuses and says
// to stop the gateway; after the first is killed with -9, a new serve starts
// on the directory (no stale lock).
func TestSecondServeOnOneDataDir(t *testing.T) {
	dir := t.TempDir() + "/data"
	first := startChild(t, nil, "--data-dir", dir)
	pid := fmt.Sprint("pid ", first.cmd.Process.Pid)

	code, out := runChild(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, dir) || !strings.Contains(out, pid) {
		t.Fatalf("second serve on %s: exit %d\n%s\nwant a failure naming the directory and %s", dir, code, out, pid)
	}
	code, out = runChild(t, "kek", "rotate", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, pid) || !strings.Contains(out, "stop the gateway first") {
		t.Fatalf("kek rotate next to a running gateway: exit %d\n%s", code, out)
	}

	first.cmd.Process.Kill()
	first.cmd.Wait()
	second := startChild(t, nil, "--data-dir", dir)
	if second.dataURL == "" {
		t.Fatal("no gateway after the first was killed")
	}
}
