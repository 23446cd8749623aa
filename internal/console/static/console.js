// Gatehouse console: the little JavaScript the pages need (copy button,
// passkeys, Cedar highlighting). No inline script anywhere: the
// Content-Security-Policy allows only this file.
"use strict";

(function () {
  const csrf = () => document.querySelector("main").dataset.csrf || "";

  // After single sign-on: continue into the console with a same-site
  // navigation (the identity provider's redirect was cross-site, so the
  // SameSite=Strict session cookie would not go with a redirect).
  const cont = document.querySelector("a#continue[data-auto]");
  if (cont && cont.getAttribute("href").startsWith("/console/")) {
    window.location.assign(cont.getAttribute("href"));
  }

  // Copy a shown-once secret.
  document.querySelectorAll("[data-copy]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const field = document.getElementById(btn.dataset.copy);
      const status = document.getElementById("copied");
      try {
        await navigator.clipboard.writeText(field.value);
        status.textContent = "Copied to the clipboard.";
      } catch (e) {
        field.select();
        status.textContent = "Select the text and copy it (Ctrl+C).";
      }
    });
  });

  // Cedar highlighting: keywords, strings, comments (text content only; no HTML injected).
  document.querySelectorAll("[data-cedar]").forEach((pre) => {
    const text = pre.textContent;
    pre.textContent = "";
    const re = /(\/\/[^\n]*)|("(?:[^"\\]|\\.)*")|\b(permit|forbid|when|unless|principal|action|resource|context|in|has|like|if|then|else|true|false)\b/g;
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      pre.appendChild(document.createTextNode(text.slice(last, m.index)));
      const span = document.createElement("span");
      span.className = m[1] ? "cm" : m[2] ? "str" : "kw";
      span.textContent = m[0];
      pre.appendChild(span);
      last = re.lastIndex;
    }
    pre.appendChild(document.createTextNode(text.slice(last)));
  });

  // WebAuthn JSON <-> binary (base64url).
  const b64u = {
    dec: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)).buffer,
    enc: (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  };
  async function post(url, body) {
    const r = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body || {}) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
    return j;
  }
  function credentialJSON(c) {
    const out = { id: c.id, rawId: b64u.enc(c.rawId), type: c.type, response: {} };
    for (const k of ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"]) {
      if (c.response[k]) out.response[k] = b64u.enc(c.response[k]);
    }
    if (c.response.getTransports) out.response.transports = c.response.getTransports();
    return out;
  }

  const loginBtn = document.getElementById("passkey-login");
  if (loginBtn) {
    loginBtn.addEventListener("click", async () => {
      const err = document.getElementById("passkey-error");
      err.hidden = true;
      try {
        const begin = await post("/console/login/passkey/begin", { user: document.getElementById("user").value });
        const pk = begin.options.publicKey || begin.options;
        pk.challenge = b64u.dec(pk.challenge);
        (pk.allowCredentials || []).forEach((c) => (c.id = b64u.dec(c.id)));
        const cred = await navigator.credentials.get({ publicKey: pk });
        const done = await post("/console/login/passkey/finish/" + encodeURIComponent(begin.ceremony), credentialJSON(cred));
        location.assign(done.next || "/console/");
      } catch (e) {
        err.textContent = "Passkey sign-in failed: " + e.message;
        err.hidden = false;
      }
    });
  }

  const regBtn = document.getElementById("passkey-register");
  if (regBtn) {
    regBtn.addEventListener("click", async () => {
      const status = document.getElementById("passkey-status");
      try {
        const code = document.getElementById("passkey-code");
        const begin = await post("/console/passkeys/register/begin", { code: code ? code.value.trim() : "" });
        const pk = begin.options.publicKey || begin.options;
        pk.challenge = b64u.dec(pk.challenge);
        pk.user.id = b64u.dec(pk.user.id);
        (pk.excludeCredentials || []).forEach((c) => (c.id = b64u.dec(c.id)));
        const cred = await navigator.credentials.create({ publicKey: pk });
        const name = document.getElementById("passkey-name").value || "passkey";
        await post("/console/passkeys/register/finish/" + encodeURIComponent(begin.ceremony) + "?name=" + encodeURIComponent(name), credentialJSON(cred));
        status.textContent = "Passkey added.";
        setTimeout(() => location.reload(), 300);
      } catch (e) {
        status.textContent = "Adding the passkey failed: " + e.message;
      }
    });
  }
})();
