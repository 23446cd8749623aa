// Package scan finds Gatehouse keys in files, streams and git history.
//
// A candidate is a key prefix (gk_ or gka_) followed by 38 base62 characters,
// standing alone (no letter, digit or underscore right before it, no letter or
// digit right after); it is a match only when its CRC-32 checksum is right
// (vkey.Parse), so a random string is taken for a key with probability about
// 62^-6 (2·10^-11). Matches carry the secret as a vkey.Secret, which redacts
// itself when printed or logged; callers show Hint and send Reveal only to the
// gateway (POST /v1/keys/leaked).
package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Match is one key found.
type Match struct {
	File   string      `json:"file"`
	Line   int         `json:"line"`
	Column int         `json:"column"`
	Commit string      `json:"commit,omitempty"` // --git: the commit that added it
	Kind   vkey.Kind   `json:"kind"`
	Hint   string      `json:"hint"`
	Secret vkey.Secret `json:"-"`
	// Encoding is "base64" when the key was found by decoding the text at
	// Column; "" when it stands in the text as it is.
	Encoding string `json:"encoding,omitempty"`
}

// Where is file:line (commit:file:line for git history).
func (m Match) Where() string {
	if m.Commit != "" {
		return fmt.Sprintf("%s:%s:%d", shortCommit(m.Commit), m.File, m.Line)
	}
	return fmt.Sprintf("%s:%d", m.File, m.Line)
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func isWord(c byte) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isAlnum(c byte) bool { return c != '_' && isWord(c) }

var gk = []byte("gk")

// Line returns the keys in one line of text (columns are 1-based bytes).
// Candidates are found by hand (prefix, then 38 base62 characters), which is
// several times faster than a regular expression on ordinary text.
func Line(line []byte) []Match {
	var out []Match
	for i := 0; ; {
		j := bytes.Index(line[i:], gk)
		if j < 0 {
			return out
		}
		s := i + j
		i = s + 2
		p := s + 2
		if p < len(line) && line[p] == 'a' {
			p++
		}
		if p >= len(line) || line[p] != '_' {
			continue
		}
		p++
		e := p
		for e < len(line) && e-p < 38 && isAlnum(line[e]) {
			e++
		}
		if e-p != 38 || (s > 0 && isWord(line[s-1]) && !escaped(line[:s])) || (e < len(line) && isAlnum(line[e])) {
			continue
		}
		kind, secret, err := vkey.Parse(string(line[s:e]))
		if err != nil {
			continue
		}
		out = append(out, Match{Column: s + 1, Kind: kind, Hint: secret.Hint(), Secret: secret})
		i = e
	}
}

// escaped reports whether pre ends in an escape sequence, so that a key right
// after it stands alone in the decoded text: a backslash escape (\n, \t, \"
// in JSON or shell strings), \uXXXX, or URL percent-encoding (%3D, %22).
// Without it "a=1\ngk_…" in a JSON string or "key%3Dgk_…" in a URL was
// taken for a longer word and missed.
func escaped(pre []byte) bool {
	n := len(pre)
	switch {
	case n >= 2 && pre[n-2] == '\\':
		return true
	case n >= 3 && pre[n-3] == '%' && isHex(pre[n-2]) && isHex(pre[n-1]):
		return true
	case n >= 6 && pre[n-6] == '\\' && pre[n-5] == 'u' && isHex(pre[n-4]) && isHex(pre[n-3]) && isHex(pre[n-2]) && isHex(pre[n-1]):
		return true
	}
	return false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// minEncoded is the shortest base64 run that can hold a key (41 bytes → 55
// characters without padding).
const minEncoded = 55

// maxDepth bounds base64 inside base64 (a Kubernetes secret of a Docker
// config holds base64 twice).
const maxDepth = 2

// lineAll is Line plus keys hidden in base64 (standard or URL alphabet, with
// or without padding): each run of at least minEncoded base64 characters is
// decoded from its start and scanned again, to maxDepth. Matches inside a run
// report the run's column and Encoding "base64".
func lineAll(line []byte, depth int) []Match {
	out := Line(line)
	if depth >= maxDepth {
		return out
	}
	for i := 0; i < len(line); {
		if !b64Table[line[i]] {
			i++
			continue
		}
		j := i + 1
		for j < len(line) && b64Table[line[j]] {
			j++
		}
		if j-i >= minEncoded {
			if dec := decodeB64(line[i:j]); dec != nil {
				for _, m := range lineAll(dec, depth+1) {
					m.Column, m.Encoding = i+1, "base64"
					out = append(out, m)
				}
			}
		}
		i = j
	}
	return out
}

// b64Table is the base64 alphabets without padding: "=" ends a run, so that
// KEY=<base64> decodes from the value's start.
var b64Table = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isWord(byte(c)) || c == '+' || c == '/' || c == '-'
	}
	return t
}()

// decodeB64 decodes run (no padding) in whichever alphabet fits; nil when it
// is not base64. A dangling last character (a length of 4n+1) is dropped.
func decodeB64(run []byte) []byte {
	if len(run)%4 == 1 {
		run = run[:len(run)-1]
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(string(run)); err == nil {
			return b
		}
	}
	return nil
}

// maxLine is the longest piece of a line scanned at once; longer lines
// (minified files, binaries) are scanned in pieces that overlap by tail bytes,
// so a key across a boundary is found once.
const (
	maxLine = 1 << 20
	tail    = 41 // a key is 41 (gk_) or 42 (gka_) bytes long
)

// Reader scans r, calling fn for every key; name is the file name reported.
func Reader(name string, r io.Reader, fn func(Match)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	n, skip := 0, 0
	var buf []byte
	emit := func(line int) {
		for _, m := range lineAll(buf, 0) {
			if m.Column-1+len(m.Secret) <= skip {
				continue // found whole in the previous piece
			}
			m.File, m.Line = name, line
			fn(m)
		}
	}
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) >= maxLine {
				emit(n + 1)
				buf = append(buf[:0], buf[len(buf)-tail:]...)
				skip = tail
			}
			continue
		}
		if len(buf) > 0 {
			n++
			emit(n)
		}
		buf, skip = buf[:0], 0
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scan: %s: %w", name, err)
		}
	}
}

// Paths scans files and directories (recursively, skipping .git); "-" is stdin.
func Paths(paths []string, stdin io.Reader, fn func(Match)) error {
	for _, p := range paths {
		if p == "-" {
			if err := Reader("-", stdin, fn); err != nil {
				return err
			}
			continue
		}
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == ".git" && path != p {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return Reader(path, f, fn)
		})
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	return nil
}

// Git scans every commit of the repository at dir (all refs, and commits
// only the reflog still reaches): each line a commit added, reported with the
// commit, the file and its line there. Binary files are diffed as text
// (--text): without it git prints "Binary files differ" and a key committed in
// one was never seen.
func Git(ctx context.Context, dir string, fn func(Match)) error {
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "log", "--all", "--reflog", "-p", "--text", "--no-color", "--no-ext-diff", "--no-textconv", "--unified=0", "--format=commit %H")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("scan: git: %w", err)
	}
	perr := parseGitLog(out, fn)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("scan: git log: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return perr
}

var hunk = regexp.MustCompile(`^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@`)

func parseGitLog(r io.Reader, fn func(Match)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var commit, file string
	line := 0
	for sc.Scan() {
		b := sc.Bytes()
		switch {
		case bytes.HasPrefix(b, []byte("commit ")):
			commit, file = string(b[7:]), ""
		case bytes.HasPrefix(b, []byte("+++ ")):
			file = strings.TrimPrefix(string(b[4:]), "b/")
		case bytes.HasPrefix(b, []byte("@@ ")):
			if m := hunk.FindSubmatch(b); m != nil {
				line, _ = strconv.Atoi(string(m[1]))
			}
		case len(b) > 0 && b[0] == '+' && file != "":
			for _, m := range lineAll(b[1:], 0) {
				m.File, m.Line, m.Commit = file, line, commit
				fn(m)
			}
			line++
		}
	}
	return sc.Err()
}
