package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// childArgs, when set, makes the test binary act as the gatehouse command:
// crash tests run the real gateway in a process they can kill -9.
const childArgs = "GATEHOUSE_E2E_CHILD_ARGS"

func TestMain(m *testing.M) {
	if a := os.Getenv(childArgs); a != "" {
		var args []string
		json.Unmarshal([]byte(a), &args)
		os.Exit(cli.Run(context.Background(), args, &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
	}
	os.Exit(m.Run())
}

type child struct {
	cmd               *exec.Cmd
	dataURL, adminURL string
	adminKey          string
}

// startChild runs `gatehouse serve` in a child process and waits for its banner.
// On PostgreSQL it opens a small pool, as every replica under test does.
func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	if slices.Contains(args, "--database") {
		conf := filepath.Join(t.TempDir(), "store.yaml")
		yaml := fmt.Sprintf("store:\n  max_open_conns: %d\n  min_open_conns: %d\n  max_idle_conns: 2\n", testPoolSize, testPoolMinimum)
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", conf)
	}
	a, _ := json.Marshal(append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childArgs+"="+string(a), "GATEHOUSE_LOG_LEVEL=warn"), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &child{cmd: cmd}
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "data plane:"):
			c.dataURL = strings.TrimSuffix(strings.Fields(line)[2], "/v1")
		case strings.HasPrefix(line, "admin API:"):
			c.adminURL = strings.Fields(line)[2]
		case strings.HasPrefix(line, "export GATEHOUSE_ADMIN_KEY="):
			c.adminKey = strings.TrimPrefix(line, "export GATEHOUSE_ADMIN_KEY=")
		case line == "Press Ctrl-C to stop.": // the banner's last line
			go func() { // keep draining stdout
				for sc.Scan() {
				}
			}()
			return c
		}
	}
	if c.dataURL == "" {
		t.Fatal("the gateway did not start")
	}
	return c
}

// killableArgs are the arguments and environment of a child the test will
// kill and restart with the same ones: its data directory, an instance
// timeout of a second (a dead replica's holds are swept soon after), and on
// PostgreSQL (dsn not empty) the database and a KEK both lives share.
func killableArgs(t *testing.T, dsn string) (args, env []string) {
	args = []string{"--data-dir", t.TempDir() + "/data"}
	env = []string{"GATEHOUSE_INSTANCE_TIMEOUT=1s"}
	if dsn != "" {
		args = append(args, "--database", dsn)
		env = append(env, "GATEHOUSE_KEK=AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=")
	}
	return args, env
}

// agentKey connects c to the fake upstream up (provider "fake", OpenAI,
// gpt-*) and makes principal "agent" (team "default") and a key of it; it
// returns c's admin client and the key.
func (c *child) agentKey(t *testing.T, up *providertest.Server) (*client.Client, client.CreatedKey) {
	t.Helper()
	adm := client.New(c.adminURL, c.adminKey)
	ctx := context.Background()
	if _, err := adm.CreateProvider(ctx, client.ProviderInput{Name: "fake", Type: "openai", BaseURL: up.OpenAIBaseURL(), Models: []string{"gpt-*"}, Keys: []string{upstreamKey}}); err != nil {
		t.Fatal(err)
	}
	name, teams := "agent", []string{"default"}
	adm.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams})
	k, err := adm.CreateKey(ctx, client.KeyInput{Principal: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	return adm, k
}

// TestCrashChargesOpenReservations is proof 4 of issue #3: kill -9 the gateway
// with calls in flight; after a restart, spend includes every reservation that
// was not settled, in full.
func TestCrashChargesOpenReservations(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			args, env := killableArgs(t, dsn(t))
			up := providertest.New(t, upstreamKey)
			first := startChild(t, env, args...)
			adm, k := first.agentKey(t, up)
			ctx := context.Background()
			b := setBudget(t, adm, k.ID, 1_000_000, false)
			up.SetFault(sim.Fault{Latency: time.Minute}) // calls hang upstream

			const inFlight = 5
			for range inFlight {
				go func() {
					req, _ := http.NewRequest("POST", first.dataURL+"/v1/chat/completions", strings.NewReader(attackBody))
					req.Header.Set("Authorization", "Bearer "+k.Secret)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
			}
			want := inFlight * worstCase(attackBody)
			deadline := time.Now().Add(10 * time.Second)
			for {
				cur, _ := adm.Budget(ctx, b.ID)
				if cur.Reserved == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("reserved %d, want %d before the crash", cur.Reserved, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := first.cmd.Process.Signal(os.Kill); err != nil {
				t.Fatal(err)
			}
			first.cmd.Wait()

			second := startChild(t, env, args...)
			adm = client.New(second.adminURL, first.adminKey)
			deadline = time.Now().Add(15 * time.Second)
			for {
				cur, err := adm.Budget(ctx, b.ID)
				if err == nil && cur.Reserved == 0 && cur.Spent == want {
					t.Logf("after restart: spent %d = %d reservations in full", cur.Spent, inFlight)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after restart: spent %d reserved %d (%v); want spent %d reserved 0", cur.Spent, cur.Reserved, err, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
