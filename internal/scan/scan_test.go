package scan

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

func collect(t *testing.T, text string) []Match {
	t.Helper()
	var out []Match
	if err := Reader("f", strings.NewReader(text), func(m Match) { out = append(out, m) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReader(t *testing.T) {
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	a := vkey.Generate(vkey.KindAdmin).Reveal()
	bad := k[:len(k)-1] + string("0123456789"[(strings.IndexByte("0123456789", k[len(k)-1])+1)%10])
	if strings.IndexByte("0123456789", k[len(k)-1]) < 0 {
		bad = k[:len(k)-1] + "0"
	}
	tests := []struct {
		name  string
		text  string
		lines []int
	}{
		{"env file", "A=1\nOPENAI_API_KEY=" + k + "\n", []int{2}},
		{"quoted, two on a line", `client = New("` + k + `", "` + a + `")`, []int{1, 1}},
		{"no final newline", "x\ny\n" + k, []int{3}},
		{"bad checksum", "key: " + bad + "\n", nil},
		{"inside a longer word", "x" + k + "\n" + k + "z\n" + "_" + k + "\n", nil},
		{"followed by punctuation", k + ".\n(" + k + ")\n", []int{1, 2}},
		{"CRLF", "a\r\n" + k + "\r\n", []int{2}},
		{"random base62", "gk_" + strings.Repeat("Ab1", 13)[:38] + "\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := collect(t, tt.text)
			var lines []int
			for _, m := range ms {
				lines = append(lines, m.Line)
				if !strings.Contains(tt.text, m.Secret.Reveal()) || m.Hint != m.Secret.Hint() {
					t.Errorf("match %+v is not in the text", m)
				}
			}
			if fmt.Sprint(lines) != fmt.Sprint(tt.lines) {
				t.Errorf("lines %v, want %v", lines, tt.lines)
			}
		})
	}
}

// A key in a line longer than one piece is found once, wherever the piece
// boundary falls.
func TestLongLines(t *testing.T) {
	k := vkey.Generate(vkey.KindAdmin).Reveal()
	for _, off := range []int{0, 1, 20, 40, 41, 42, 43, 100} {
		pad := strings.Repeat(" ", maxLine-off)
		text := "first\n" + pad + k + " " + strings.Repeat(" ", 3*maxLine) + k + "\nlast " + k + "\n"
		ms := collect(t, text)
		if len(ms) != 3 || ms[0].Line != 2 || ms[1].Line != 2 || ms[2].Line != 3 {
			var got []string
			for _, m := range ms {
				got = append(got, m.Where())
			}
			t.Errorf("offset %d: %v", off, got)
		}
	}
}

func TestNoFalsePositivesOnRandomData(t *testing.T) {
	// Random base62 after a prefix: a checksum match would be a false
	// positive; at 2e-11 per candidate, 200k candidates must find none.
	var b bytes.Buffer
	for range 200_000 {
		b.WriteString("gk_")
		b.WriteString(vkey.Generate(vkey.KindVirtual).Reveal()[3:35]) // 32 random characters
		b.WriteString(vkey.Generate(vkey.KindVirtual).Reveal()[3:9])  // 6 more in place of the checksum
		b.WriteByte('\n')
	}
	ms := collect(t, b.String())
	if len(ms) > 0 {
		t.Fatalf("%d false positives", len(ms))
	}
	junk := make([]byte, 4<<20)
	rand.Read(junk)
	if ms := collect(t, string(junk)); len(ms) > 0 {
		t.Fatalf("%d keys in random bytes", len(ms))
	}
}

func TestPathsAndStdin(t *testing.T) {
	dir := t.TempDir()
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	os.MkdirAll(filepath.Join(dir, "sub", ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "app.py"), []byte("KEY = '"+k+"'\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", ".git", "config"), []byte(k), 0o644) // skipped: history is --git's job
	var got []string
	err := Paths([]string{dir, "-"}, strings.NewReader("\n\n"+k), func(m Match) { got = append(got, m.Where()) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "sub", "app.py") + ":1", "-:3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err := Paths([]string{filepath.Join(dir, "missing")}, nil, func(Match) {}); err == nil {
		t.Error("a missing path is not an error")
	}
}

func TestGitHistory(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	os.WriteFile(filepath.Join(dir, "config.env"), []byte("A=1\nB=2\nKEY="+k+"\n"), 0o644)
	git("add", ".")
	git("commit", "-qm", "add config")
	os.WriteFile(filepath.Join(dir, "config.env"), []byte("A=1\nB=2\nKEY=\n"), 0o644)
	git("commit", "-qam", "remove the key")
	// The key is gone from the tree but not from history.
	if err := Paths([]string{filepath.Join(dir, "config.env")}, nil, func(m Match) { t.Errorf("found in the tree: %s", m.Where()) }); err != nil {
		t.Fatal(err)
	}
	var got []Match
	if err := Git(context.Background(), dir, func(m Match) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].File != "config.env" || got[0].Line != 3 || len(got[0].Commit) != 40 || got[0].Secret.Reveal() != k {
		t.Fatalf("git matches %+v", got)
	}
	if err := Git(context.Background(), t.TempDir(), func(Match) {}); err == nil {
		t.Error("a directory that is no repository is not an error")
	}
}

func TestMatchNeverPrintsTheSecret(t *testing.T) {
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	ms := collect(t, k)
	if s := fmt.Sprintf("%v %+v %#v", ms[0], ms[0], ms[0]); strings.Contains(s, k) {
		t.Fatal("formatting a match prints the key")
	}
}

func FuzzLine(f *testing.F) {
	f.Add([]byte(vkey.Generate(vkey.KindVirtual).Reveal()))
	f.Add([]byte("gk_" + strings.Repeat("a", 38)))
	f.Add([]byte("x gka_" + strings.Repeat("Z", 38) + " y"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range Line(b) {
			if _, _, err := vkey.Parse(m.Secret.Reveal()); err != nil {
				t.Fatalf("match %q does not parse", m.Secret.Reveal())
			}
			if !bytes.Contains(b, []byte(m.Secret.Reveal())) {
				t.Fatal("match not in the input")
			}
		}
	})
}

// BenchmarkReader scans text with a key every 1,000 lines.
func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	for i := 0; buf.Len() < 16<<20; i++ {
		if i%1000 == 0 {
			buf.WriteString("API_KEY=" + k + "\n")
			continue
		}
		buf.WriteString("some ordinary source line with gk_ mentions and identifiers_like_this = 42\n")
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := Reader("f", bytes.NewReader(data), func(Match) { n++ }); err != nil || n == 0 {
			b.Fatal(err, n)
		}
	}
}

// Keys in the forms they leak in: escaped in JSON or shell strings,
// percent-encoded in URLs, base64 (Kubernetes secrets, Basic auth, base64 of
// base64), inside binary files. A random gk_ string with a bad checksum stays
// unreported in every form.
func TestEncodedForms(t *testing.T) {
	k := vkey.Generate(vkey.KindVirtual).Reveal()
	b64 := base64.StdEncoding.EncodeToString
	fake := "gk_" + strings.Repeat("Ab1", 13)[:38]
	tests := []struct {
		name     string
		text     string
		n        int
		encoding string
	}{
		{"JSON newline escape", `{"env":"A=1\n` + k + `\nB=2"}`, 1, ""},
		{"JSON unicode escape", `{"v":"\u0022` + k + `\u0022"}`, 1, ""},
		{"URL percent-encoded", "https://x.example/cb?q=token%3D" + k + "%26a%3Db", 1, ""},
		{"kubernetes secret", "data:\n  token: " + b64([]byte(k)) + "\n", 1, "base64"},
		{"base64 with trailing newline", "v: " + b64([]byte(k+"\n")) + "\n", 1, "base64"},
		{"env value base64", "TOKEN=" + b64([]byte(k)), 1, "base64"},
		{"basic auth", "Authorization: Basic " + b64([]byte("user:"+k)), 1, "base64"},
		{"URL-safe base64 unpadded", "t=" + base64.RawURLEncoding.EncodeToString([]byte("[\""+k+"\"]?>")), 1, "base64"},
		{"base64 of base64", `{"auths":"` + b64([]byte(`{"auth":"`+b64([]byte("u:"+k))+`"}`)) + `"}`, 1, "base64"},
		{"binary", "\x00\x01\xff\xfe" + k + "\x00\x00\x89PNG", 1, ""},
		{"bad checksum, plain", fake, 0, ""},
		{"bad checksum, escaped", `"\n` + fake + `"`, 0, ""},
		{"bad checksum, base64", "token: " + b64([]byte(fake)), 0, ""},
		{"still not inside a word", "x" + k, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := collect(t, tt.text)
			if len(ms) != tt.n {
				t.Fatalf("%d matches, want %d", len(ms), tt.n)
			}
			for _, m := range ms {
				if m.Secret.Reveal() != k || m.Encoding != tt.encoding {
					t.Errorf("match %+v (encoding %q), want the key with encoding %q", m, m.Encoding, tt.encoding)
				}
			}
		})
	}
}

// Git history hides keys in files deleted since, on branches never merged,
// and in binary files (which git diffs only with --text).
func TestGitHistoryHidingPlaces(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	deleted, branch, binary := vkey.Generate(vkey.KindVirtual).Reveal(), vkey.Generate(vkey.KindVirtual).Reveal(), vkey.Generate(vkey.KindAdmin).Reveal()
	os.WriteFile(filepath.Join(dir, "old.env"), []byte("KEY="+deleted+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "blob.bin"), append([]byte("\x00\x01\x02\xff"), []byte(binary+"\x00\x00")...), 0o644)
	git("add", ".")
	git("commit", "-qm", "one")
	git("rm", "-q", "old.env", "blob.bin")
	git("commit", "-qm", "delete")
	git("checkout", "-q", "-b", "feature")
	os.WriteFile(filepath.Join(dir, "f.py"), []byte("x = 1\nk = '"+branch+"'\n"), 0o644)
	git("add", ".")
	git("commit", "-qm", "feature")
	git("checkout", "-q", "main")
	got := map[string]Match{}
	if err := Git(context.Background(), dir, func(m Match) { got[m.Secret.Reveal()] = m }); err != nil {
		t.Fatal(err)
	}
	for k, file := range map[string]string{deleted: "old.env", branch: "f.py", binary: "blob.bin"} {
		if m, ok := got[k]; !ok || m.File != file {
			t.Errorf("key in %s: %+v, %v", file, m, ok)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d keys, want 3", len(got))
	}
}
