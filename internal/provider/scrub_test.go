package provider

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScrubKeys(t *testing.T) {
	key := "upstream-Key-9f8e7d6c5b4a39281706" // no known prefix
	u := NewUpstream(Provider{Name: "p", BaseURL: "http://x"}, []APIKey{"other-key-ABCDEFGHIJKLMNOP", APIKey(key)}, nil)
	cases := map[string]string{
		"the key in full":           "invalid key " + key + ".",
		"the key twice":             key + key,
		"a masked echo":             "key " + key[:10] + "****" + key[len(key)-10:],
		"inside a longer token":     "x" + key + "y",
		"the other key of the pool": "got other-key-ABCDEFGHIJKLMNOP here",
		"a tail of the key":         "…" + key[20:],
	}
	for name, in := range cases {
		out := u.ScrubKeys(in)
		for _, k := range []string{key, "other-key-ABCDEFGHIJKLMNOP"} {
			for j := 0; j+minKeyRun <= len(k); j++ {
				if strings.Contains(out, k[j:j+minKeyRun]) {
					t.Errorf("%s: %q still holds %q", name, out, k[j:j+minKeyRun])
				}
			}
		}
		if !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s: nothing redacted in %q", name, out)
		}
	}
	if got := u.ScrubKeys("model gpt-4o is overloaded"); got != "model gpt-4o is overloaded" {
		t.Fatalf("ordinary text changed: %q", got)
	}
	// A short run of the key's characters is ordinary text.
	if got := u.ScrubKeys("upstream-K"[:7]); got != "upstrea" {
		t.Fatalf("a short run: %q", got)
	}
}

func TestUpstreamParseErrorScrubsEveryField(t *testing.T) {
	key := "tok_live_4242424242abcdefabcdef"
	u := NewUpstream(Provider{Name: "p", BaseURL: "http://x"}, []APIKey{APIKey(key)}, nil)
	body := `{"error":{"message":"bad key ` + key + `","type":"t-` + key + `","code":"` + key + `","param":"` + key[:12] + `"}}`
	e := u.ParseError(400, []byte(body))
	for _, f := range []string{e.Message, e.Type, e.Code, e.Param} {
		if strings.Contains(f, key[:minKeyRun]) || strings.Contains(f, key[len(key)-minKeyRun:]) {
			t.Fatalf("field %q leaks the key", f)
		}
	}
	// JSON escapes do not hide it: the decoded text is scrubbed.
	esc := `{"error":{"message":"\u0074ok_live_4242424242abcdefabcdef"}}`
	if e := u.ParseError(400, []byte(esc)); strings.Contains(e.Message, "4242424242") {
		t.Fatalf("escaped key leaked: %q", e.Message)
	}
	// Long messages are cut on a rune boundary.
	long := `{"error":{"message":"` + strings.Repeat("é", 800) + `"}}`
	if e := u.ParseError(400, []byte(long)); !utf8.ValidString(e.Message) || len(e.Message) > 1010 {
		t.Fatalf("long message: valid %v, %d bytes", utf8.ValidString(e.Message), len(e.Message))
	}
}

func TestValidateBaseURL(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://api.openai.com/v1":       true,
		"http://127.0.0.1:8000":           true,
		"https://user:pw@api.example.com": false,
		"https://api.example.com/v1?x=1":  false,
		"https://api.example.com/v1?":     false,
		"https://api.example.com/v1#frag": false,
		"https://api.example.com/v1#":     false,
		"ftp://api.example.com":           false,
		"file:///etc/passwd":              false,
		"api.example.com":                 false,
	} {
		err := Provider{Name: "p", Type: TypeOpenAI, BaseURL: url, Models: []string{"*"}}.Validate()
		if (err == nil) != ok {
			t.Errorf("%s: %v", url, err)
		}
	}
}

func TestNoRedirects(t *testing.T) {
	var followed bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed = true }))
	defer target.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer up.Close()
	u := NewUpstream(Provider{Name: "p", Type: TypeAnthropic, BaseURL: up.URL}, []APIKey{"k"}, http.DefaultClient)
	req, _ := http.NewRequest("POST", up.URL, nil)
	out, err := u.NewRequest(req.Context(), req, Messages, []byte(`{}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.Client.Do(out)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || followed {
		t.Fatalf("status %d, followed %v", resp.StatusCode, followed)
	}
	if http.DefaultClient.CheckRedirect != nil {
		t.Fatal("the shared client was modified")
	}
}
