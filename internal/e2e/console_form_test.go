package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Console helpers: a same-origin browser's form posts, without following
// redirects, and what a test reads from the answers.

// consoleForm posts (or gets) a console form on a real gateway without
// following redirects, as a same-origin browser would.
func consoleForm(t *testing.T, method, target string, form url.Values, c *http.Cookie) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if c != nil {
		req.AddCookie(c)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp
}

func consoleCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "gatehouse-console" && c.Value != "" {
			return c
		}
	}
	return nil
}

// consoleCSRF is the CSRF token of a console page's forms.
func consoleCSRF(page string) string {
	_, rest, _ := strings.Cut(page, `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	return csrf
}
