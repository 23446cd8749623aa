// Drives the real oauth4webapi (npm) against a running Gatehouse, as a third-
// party OAuth client would: RFC 8414 discovery, client credentials with
// client_secret_basic and client_secret_post, DPoP-bound tokens with each key
// type oauth4webapi makes, calls with them, and a 401 challenge.
// Env: ISSUER (the data plane's URL, also its tokens.issuer), KEY (a data-plane
// key), MODEL.
// Run by scripts/interop/oauth4webapi.sh; exits non-zero on any failure.
import * as oauth from 'oauth4webapi'

const issuer = new URL(process.env.ISSUER)
const insecure = { [oauth.allowInsecureRequests]: issuer.protocol === 'http:' }
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
console.log('discovered', as.issuer, as.token_endpoint, 'DPoP algs:', as.dpop_signing_alg_values_supported.join(' '))
const client = { client_id: 'interop' }
const chat = () => JSON.stringify({ model: process.env.MODEL || 'gpt-4o', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] })
const chatURL = new URL('/v1/chat/completions', issuer)

for (const alg of ['Ed25519', 'ES256', 'ES384', 'ES512', 'PS256', 'RS256']) {
  const kp = await oauth.generateKeyPair(alg, { extractable: true })
  const DPoP = oauth.DPoP(client, kp)
  const resp = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(process.env.KEY),
    new URLSearchParams({ scope: 'chat' }), { DPoP, ...insecure })
  const result = await oauth.processClientCredentialsResponse(as, client, resp)
  const call = await oauth.protectedResourceRequest(result.access_token, 'POST', chatURL,
    new Headers({ 'content-type': 'application/json' }), chat(), { DPoP, ...insecure })
  console.log(`DPoP ${alg}: token_type ${result.token_type}, scope "${result.scope}", call ${call.status}`)
  if (result.token_type !== 'dpop' || result.scope !== 'chat' || call.status !== 200) process.exitCode = 1
}
for (const [name, auth] of [['client_secret_basic', oauth.ClientSecretBasic(process.env.KEY)], ['client_secret_post', oauth.ClientSecretPost(process.env.KEY)]]) {
  const resp = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), insecure)
  const result = await oauth.processClientCredentialsResponse(as, client, resp)
  const call = await oauth.protectedResourceRequest(result.access_token, 'POST', chatURL,
    new Headers({ 'content-type': 'application/json' }), chat(), insecure)
  console.log(`Bearer via ${name}: token_type ${result.token_type}, call ${call.status}`)
  if (result.token_type !== 'bearer' || call.status !== 200) process.exitCode = 1
  // oauth4webapi's RFC 9068 resource-server validation: typ at+jwt, signature
  // by a key of the advertised jwks_uri, iss = the discovered issuer, aud, exp,
  // and the required claims (iss exp aud sub iat jti client_id).
  const claims = await oauth.validateJwtAccessToken(as, new Request(chatURL, { headers: { authorization: `Bearer ${result.access_token}` } }),
    as.issuer, insecure)
  console.log(`  RFC 9068 validation: iss ${claims.iss}, client_id ${claims.client_id}, scope "${claims.scope}"`)
}
try {
  await oauth.protectedResourceRequest('a.b.c', 'POST', chatURL, new Headers(), '{}', insecure)
  console.log('a bad token got no challenge')
  process.exitCode = 1
} catch (e) {
  const c = e.cause?.[0]
  console.log('401 challenge:', JSON.stringify(e.cause))
  if (e.code !== 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' || c?.scheme !== 'bearer' || c?.parameters?.error !== 'invalid_token') process.exitCode = 1
}
console.log(process.exitCode ? 'FAIL' : 'PASS')
