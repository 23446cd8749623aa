package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// authenticator is a software WebAuthn authenticator: a P-256 key, "none"
// attestation, user presence and verification always given.
type authenticator struct {
	key    *ecdsa.PrivateKey
	id     []byte
	origin string
	rpID   string
	count  uint32
}

func newAuthenticator(t *testing.T, rpID, origin string) *authenticator {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &authenticator{key: key, id: id, origin: origin, rpID: rpID}
}

var b64 = base64.RawURLEncoding

func (a *authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.origin, "crossOrigin": false})
	return b
}

func (a *authenticator) authData(flags byte, attested []byte) []byte {
	rp := sha256.Sum256([]byte(a.rpID))
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.count)
	return append(out, attested...)
}

// create answers navigator.credentials.create for options (the "options" the
// gateway returned).
func (a *authenticator) create(t *testing.T, options json.RawMessage) []byte {
	t.Helper()
	var o struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.Challenge == "" {
		t.Fatalf("creation options %s: %v", options, err)
	}
	x, y := make([]byte, 32), make([]byte, 32)
	a.key.X.FillBytes(x)
	a.key.Y.FillBytes(y)
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		t.Fatal(err)
	}
	attested := make([]byte, 16) // AAGUID
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(a.id)))
	attested = append(append(attested, a.id...), cose...)
	ao, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(0x45, attested)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(a.id), "rawId": b64.EncodeToString(a.id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(a.clientData("webauthn.create", o.Challenge)), "attestationObject": b64.EncodeToString(ao)}})
	return body
}

// get answers navigator.credentials.get.
func (a *authenticator) get(t *testing.T, options json.RawMessage, userHandle string) []byte {
	t.Helper()
	var o struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.Challenge == "" {
		t.Fatalf("request options %s: %v", options, err)
	}
	a.count++
	ad := a.authData(0x05, nil)
	cd := a.clientData("webauthn.get", o.Challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(a.id), "rawId": b64.EncodeToString(a.id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString([]byte(userHandle))}})
	return body
}

type ceremony struct {
	ID      string          `json:"ceremony"`
	Options json.RawMessage `json:"options"`
}

// TestPasskeys: a user registers a passkey (software authenticator, real
// go-webauthn on the gateway) and logs in with it; the session has passed MFA.
// Replays, another origin, an unregistered key and a cloned counter are refused.
func TestPasskeys(t *testing.T) {
	const origin = "https://gatehouse.example.com"
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.WebAuthn = config.WebAuthn{RPID: "gatehouse.example.com", Origins: []string{origin}}
	}})
	ctx := context.Background()
	name, kind, teams, roles := "alice", "user", []string{"research"}, []string{"admin"}
	p, err := f.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.admin.SetPassword(ctx, name, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	session, _, err := client.New("http://"+f.srv.AdminAddr(), "").Login(ctx, name, "correct horse battery staple", "")
	if err != nil {
		t.Fatal(err)
	}
	call := func(path, key string, body []byte) (int, []byte) {
		t.Helper()
		resp, b := adminDo(t, f.gateway, "POST", path, key, string(body), nil)
		return resp.StatusCode, b
	}
	begin := func(path, key string, body []byte) ceremony {
		t.Helper()
		s, b := call(path, key, body)
		var c ceremony
		if s != 200 || json.Unmarshal(b, &c) != nil || c.ID == "" {
			t.Fatalf("%s: %d %s", path, s, b)
		}
		return c
	}

	// Registration, from the user's session.
	a := newAuthenticator(t, "gatehouse.example.com", origin)
	reg := begin("/v1/auth/passkeys/register", session, []byte(`{}`))
	if s, b := call("/v1/auth/passkeys/register/"+reg.ID+"?name=laptop", session, a.create(t, reg.Options)); s != 201 {
		t.Fatalf("finish registration: %d %s", s, b)
	}
	if s, _ := call("/v1/auth/passkeys/register/"+reg.ID, session, a.create(t, reg.Options)); s != 400 {
		t.Fatalf("a ceremony used twice: %d", s)
	}

	// Login with the passkey: a session that passed MFA, which works.
	loginBody := []byte(`{"user":"alice"}`)
	lg := begin("/v1/auth/passkeys/login", "", loginBody)
	assertion := a.get(t, lg.Options, p.ID)
	s, b := call("/v1/auth/passkeys/login/"+lg.ID, "", assertion)
	var out struct {
		Session string `json:"session"`
		MFA     bool   `json:"mfa"`
	}
	if s != 200 || json.Unmarshal(b, &out) != nil || !out.MFA || !strings.HasPrefix(out.Session, "gks_") {
		t.Fatalf("passkey login: %d %s", s, b)
	}
	if _, err := client.New("http://"+f.srv.AdminAddr(), out.Session).ListTeams(ctx); err != nil {
		t.Fatalf("the passkey session: %v", err)
	}

	// Refusals.
	lg2 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg2.ID, "", assertion); s != 401 {
		t.Errorf("an assertion replayed on a new ceremony: %d %s", s, b)
	}
	other := newAuthenticator(t, "gatehouse.example.com", "https://evil.example.com")
	other.key, other.id, other.count = a.key, a.id, a.count
	lg3 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg3.ID, "", other.get(t, lg3.Options, p.ID)); s != 401 {
		t.Errorf("another origin: %d %s", s, b)
	}
	stranger := newAuthenticator(t, "gatehouse.example.com", origin)
	lg4 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg4.ID, "", stranger.get(t, lg4.Options, p.ID)); s != 401 {
		t.Errorf("an unregistered authenticator: %d %s", s, b)
	}
	a.count = 5 // a good login moves the stored counter to 6…
	lg5 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg5.ID, "", a.get(t, lg5.Options, p.ID)); s != 200 {
		t.Fatalf("login with counter 6: %d %s", s, b)
	}
	clone := *a
	clone.count = 2 // …so a copy of the key still at 3 is a clone
	lg6 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg6.ID, "", clone.get(t, lg6.Options, p.ID)); s != 401 || !strings.Contains(string(b), "cloned") {
		t.Errorf("a cloned authenticator: %d %s", s, b)
	}

	// The user lists and removes the passkey; then there is no passkey login.
	resp, lb := adminDo(t, f.gateway, "GET", "/v1/auth/passkeys", session, "", nil)
	var list struct {
		Data []struct {
			ID, Name   string
			LastUsedAt *string `json:"last_used_at"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(lb, &list) != nil || len(list.Data) != 1 || list.Data[0].Name != "laptop" || list.Data[0].LastUsedAt == nil {
		t.Fatalf("list passkeys: %d %s", resp.StatusCode, lb)
	}
	// A factor is changed only with a factor: the password session may not
	// remove the passkey; the passkey session (a fresh passkey check) may, and
	// that ends the user's other sessions.
	if resp, b := adminDo(t, f.gateway, "DELETE", "/v1/auth/passkeys/"+list.Data[0].ID, session, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("delete passkey from a password session: %d %s", resp.StatusCode, b)
	}
	if resp, b := adminDo(t, f.gateway, "DELETE", "/v1/auth/passkeys/"+list.Data[0].ID, out.Session, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete passkey: %d %s", resp.StatusCode, b)
	}
	if _, err := client.New("http://"+f.srv.AdminAddr(), session).ListTeams(ctx); !isStatus(err, 401) {
		t.Errorf("the password session after a factor change: %v", err)
	}
	// Without passkeys the begin answers as for a user with one (a decoy:
	// TestPasskeyLoginDoesNotRevealUsers); no assertion finishes it.
	lg7 := begin("/v1/auth/passkeys/login", "", loginBody)
	if s, b := call("/v1/auth/passkeys/login/"+lg7.ID, "", a.get(t, lg7.Options, p.ID)); s != 401 {
		t.Errorf("passkey login without passkeys: %d %s", s, b)
	}
	// An admin ends every session of the user (a lost laptop); a new login works.
	if code, out, errs := runCLI(t, f.gateway, "users", "logout", "alice"); code != 0 || !strings.Contains(out, "Ended") {
		t.Fatalf("users logout: %d %s %s", code, out, errs)
	}
	if _, err := client.New("http://"+f.srv.AdminAddr(), out.Session).ListTeams(ctx); !isStatus(err, 401) {
		t.Errorf("a session after users logout: %v", err)
	}
	session, _, err = client.New("http://"+f.srv.AdminAddr(), "").Login(ctx, name, "correct horse battery staple", "")
	if err != nil {
		t.Fatalf("login after users logout: %v", err)
	}
	// Disabling the user ends its sessions, on the auth routes too.
	disabled := true
	if _, err := f.admin.UpdatePrincipal(ctx, "alice", client.PrincipalInput{Disabled: &disabled}, ""); err != nil {
		t.Fatal(err)
	}
	if resp, b := adminDo(t, f.gateway, "GET", "/v1/auth/passkeys", session, "", nil); resp.StatusCode != 401 {
		t.Errorf("a disabled user's session: %d %s", resp.StatusCode, b)
	}
}

// TestPasskeysNotConfigured: without webauthn.rp_id the routes say so.
func TestPasskeysNotConfigured(t *testing.T) {
	g := startGateway(t, gwOptions{})
	if resp, b := adminDo(t, g, "POST", "/v1/auth/passkeys/login", "", `{"user":"x"}`, nil); resp.StatusCode != 404 || !strings.Contains(string(b), "passkeys_not_configured") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
