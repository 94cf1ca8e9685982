// The demo and end-to-end test authorization server for dcr-guard: node `oidc-provider` with
// RFC 7591 registration and RFC 7592 management at /register, configured to accept the Open
// Banking metadata (UK, Brazil, Australia) that dcr-guard forwards with `"forward": "json"`.
//
//   node server.mjs [--port 18080] [--admin-port 18082] [--host 127.0.0.1]
//                   [--issuer http://127.0.0.1:<port>] [--scopes "extra scopes"] [--allow-fetch]
//
// Environment (a flag wins): AS_PORT, AS_ADMIN_PORT, AS_HOST, AS_ISSUER, AS_EXTRA_SCOPES,
// AS_ALLOW_FETCH=1.
//
// Plain HTTP: the gateway in front terminates TLS. Everything is kept in memory and lost on exit.
// Signing keys are generated at start.
//
// Port `--port` (the provider, what Envoy routes to):
//   POST /register                    RFC 7591 registration (no initial access token)
//   GET|PUT|DELETE /register/{id}     RFC 7592, with `Authorization: Bearer <registration access
//                                     token>`; the token is not rotated on PUT
//   /.well-known/openid-configuration, /jwks, /auth, /token, ... the rest of an OpenID Provider
// Port `--admin-port` (tests only; never route a gateway to it):
//   GET /_test/clients/{id}           200 with the client's stored metadata, 404 when there is none
//   GET /_test/clients                200 {"clients": [ids]}
//
// stdout: one line per registration API call: `<METHOD> <path> <status>` (plus the error and its
// description when the answer is an error), and a line `outbound <url> ...` for any request
// the provider tries to make (none are made by default: see --allow-fetch).

import { X509Certificate, generateKeyPair, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs, promisify } from 'node:util';

// Key generation (worker threads) overlaps loading oidc-provider.
const jwksPromise = signingKeys();
const { default: Provider, errors } = await import('oidc-provider');

// ---------------------------------------------------------------------------------------------
// Options

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        'admin-port': { type: 'string' },
        host: { type: 'string' },
        issuer: { type: 'string' },
        scopes: { type: 'string' },
        'allow-fetch': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${err.message} (--help for usage)`);
  }
  if (values.help) {
    process.stdout.write('usage: node server.mjs [--port 18080] [--admin-port 18082] [--host 127.0.0.1] '
      + '[--issuer URL] [--scopes "a b"] [--allow-fetch]\n');
    process.exit(0);
  }
  const port = toPort(values.port ?? process.env.AS_PORT ?? '18080', 'port');
  const adminPort = toPort(values['admin-port'] ?? process.env.AS_ADMIN_PORT ?? '18082', 'admin port');
  const host = values.host ?? process.env.AS_HOST ?? '127.0.0.1';
  return {
    port,
    adminPort,
    host,
    issuer: values.issuer ?? (process.env.AS_ISSUER || undefined), // default: after binding
    extraScopes: (values.scopes ?? process.env.AS_EXTRA_SCOPES ?? '').split(/\s+/).filter(Boolean),
    allowFetch: values['allow-fetch'] ?? ['1', 'true', 'yes'].includes(process.env.AS_ALLOW_FETCH ?? ''),
  };
}

function toPort(text, what) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    fail(`invalid ${what}: ${text}`);
  }
  return n;
}

function fail(message) {
  process.stderr.write(`demo AS: ${message}\n`);
  process.exit(1);
}

function log(line) {
  process.stdout.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Scopes. oidc-provider refuses a registration whose `scope` names a scope it does not know, so
// the Open Banking scopes are listed here; --scopes / AS_EXTRA_SCOPES add more.

const SCOPES = [
  'openid', 'offline_access', 'profile', 'email',
  // UK (OBIE)
  'accounts', 'payments', 'fundsconfirmations', 'eventpolling',
  // Brazil (Open Finance Brasil)
  'consents', 'resources', 'customers', 'credit-cards-accounts', 'loans', 'financings',
  'unarranged-accounts-overdraft', 'invoice-financings', 'bank-fixed-incomes',
  'credit-fixed-incomes', 'variable-incomes', 'treasure-titles', 'funds', 'exchanges',
  'recurring-payments', 'enrollments',
  // Australia (CDR)
  'cdr:registration', 'bank:accounts.basic:read', 'bank:accounts.detail:read',
  'bank:transactions:read', 'bank:payees:read', 'bank:regular_payments:read',
  'common:customer.basic:read', 'common:customer.detail:read',
  'energy:accounts.basic:read', 'energy:accounts.detail:read', 'energy:billing:read',
  // dcr-guard's own tests
  'dcr',
];

// ---------------------------------------------------------------------------------------------
// Extra client metadata: Open Banking members kept as sent (oidc-provider silently drops
// members it does not recognise; these it stores and echoes).

const EXTRA_METADATA = [
  'software_id',
  'software_version',
  'software_statement',
  'software_roles',
  'org_id',
  'org_name',
  'client_description',
  // Brazil
  'webhook_uris',
  // UK / Brazil: kept as a plain member (certificate-bound access tokens are not switched on)
  'tls_client_certificate_bound_access_tokens',
  // Australia
  'legal_entity_id',
  'legal_entity_name',
  'recipient_base_uri',
  'revocation_uri',
];

function validateExtraMetadata(ctx, key, value) {
  if (value === undefined) return;
  const invalid = (message) => { throw new errors.InvalidClientMetadata(message); };
  switch (key) {
    case 'software_id':
    case 'software_statement':
      if (typeof value !== 'string' || !value) invalid(`${key} must be a non-empty string`);
      break;
    case 'software_version':
      if (typeof value !== 'string' && typeof value !== 'number') invalid('software_version must be a string');
      break;
    case 'webhook_uris':
      if (!Array.isArray(value) || !value.every((u) => typeof u === 'string' && URL.canParse(u) && u.startsWith('https://'))) {
        invalid('webhook_uris must be an array of https URLs');
      }
      break;
    case 'tls_client_certificate_bound_access_tokens':
      if (typeof value !== 'boolean') invalid(`${key} must be a boolean`);
      break;
    default:
  }
}

// Open Banking leniency, applied to POST and PUT /register bodies before oidc-provider reads
// them. Returns the (possibly) rewritten metadata.
//  - OIDC Registration requires grant_types to list what response_types imply (`code` →
//    authorization_code, `id_token`/`token` → implicit) and oidc-provider 8 refuses a body that
//    does not; UK requests send ["code id_token"] with no "implicit". The implied grant types
//    are added (oidc-provider 9 does the same itself).
//  - token_endpoint_auth_signing_alg is dropped unless the auth method signs a JWT
//    (private_key_jwt, client_secret_jwt): some TPPs send it with tls_client_auth, which
//    oidc-provider refuses.
function openBankingLeniency(metadata) {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    return metadata;
  }
  const out = { ...metadata };
  if (Array.isArray(out.response_types) && out.response_types.every((t) => typeof t === 'string')
      && (out.grant_types === undefined || Array.isArray(out.grant_types))) {
    const words = new Set(out.response_types.flatMap((t) => t.split(' ')));
    const grants = [...(out.grant_types ?? ['authorization_code'])];
    if (words.has('code') && !grants.includes('authorization_code')) grants.push('authorization_code');
    if ((words.has('id_token') || words.has('token')) && !grants.includes('implicit')) grants.push('implicit');
    out.grant_types = grants;
  }
  if (out.token_endpoint_auth_signing_alg !== undefined
      && !['private_key_jwt', 'client_secret_jwt'].includes(out.token_endpoint_auth_method)) {
    delete out.token_endpoint_auth_signing_alg;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// In-memory adapter. One store for all models; the admin endpoint reads the `Client` entries.

const store = new Map(); // `${model}:${id}` → { payload, expiresAt (ms, Infinity = never) }

function live(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

function findBy(model, predicate) {
  for (const [key, entry] of store) {
    if (key.startsWith(`${model}:`) && entry.expiresAt > Date.now() && predicate(entry.payload)) {
      return entry.payload;
    }
  }
  return undefined;
}

class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    return live(this.key(id));
  }

  async findByUid(uid) {
    return findBy(this.model, (p) => p.uid === uid);
  }

  async findByUserCode(userCode) {
    return findBy(this.model, (p) => p.userCode === userCode);
  }

  async consume(id) {
    const payload = live(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload?.grantId === grantId) store.delete(key);
    }
  }
}

// Drop expired artifacts now and then.
setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.expiresAt <= now) store.delete(key);
  }
}, 60_000).unref();

// ---------------------------------------------------------------------------------------------
// mTLS: the gateway terminates TLS and passes the client certificate on (Envoy's
// x-forwarded-client-cert with Cert="…", or a URL-encoded PEM in x-ssl-client-cert). Used by
// tls_client_auth / self_signed_tls_client_auth at the token endpoint, never by registration.

function clientCertificate(ctx) {
  const xfcc = ctx.get('x-forwarded-client-cert');
  const fromXfcc = /(?:^|;)Cert="([^"]+)"/.exec(xfcc)?.[1];
  const raw = fromXfcc ?? (ctx.get('x-ssl-client-cert') || undefined);
  if (!raw) return undefined;
  try {
    return new X509Certificate(decodeURIComponent(raw));
  } catch {
    return undefined;
  }
}

// DN attribute names as RFC 4514 strings and OpenSSL write them, folded to one spelling.
const DN_ALIASES = {
  '2.5.4.3': 'cn',
  commonname: 'cn',
  '2.5.4.6': 'c',
  countryname: 'c',
  '2.5.4.10': 'o',
  organizationname: 'o',
  '2.5.4.11': 'ou',
  organizationalunitname: 'ou',
  '2.5.4.97': 'organizationidentifier',
  '0.9.2342.19200300.100.1.1': 'uid',
  userid: 'uid',
  '2.5.4.5': 'serialnumber',
  '2.5.4.7': 'l',
  localityname: 'l',
  '2.5.4.8': 'st',
  stateorprovincename: 'st',
  '2.5.4.15': 'businesscategory',
  '1.3.6.1.4.1.311.60.2.1.3': 'jurisdictionc',
  jurisdictioncountryname: 'jurisdictionc',
};

function dnAttributes(text, separator) {
  return text.split(separator).map((part) => part.trim()).filter(Boolean).map((part) => {
    const eq = part.indexOf('=');
    const name = part.slice(0, eq).trim().toLowerCase();
    return `${DN_ALIASES[name] ?? name}=${part.slice(eq + 1).trim().toLowerCase()}`;
  }).sort();
}

function subjectMatches(ctx, property, expected) {
  const cert = clientCertificate(ctx);
  if (!cert) return false;
  if (property === 'tls_client_auth_subject_dn') {
    const want = dnAttributes(expected, /,(?=\s*[A-Za-z0-9.]+=)/);
    const have = dnAttributes(cert.subject, '\n');
    return want.length === have.length && want.every((a, i) => a === have[i]);
  }
  const prefix = {
    tls_client_auth_san_dns: 'DNS:',
    tls_client_auth_san_uri: 'URI:',
    tls_client_auth_san_ip: 'IP Address:',
    tls_client_auth_san_email: 'email:',
  }[property];
  return !!prefix && (cert.subjectAltName ?? '').split(', ').includes(`${prefix}${expected}`);
}

// ---------------------------------------------------------------------------------------------
// The provider

// The provider's keys, new at every start: RSA (RS256, PS256) and P-256 (ES256) for signing, RSA
// for request object encryption.
async function signingKeys() {
  const generate = promisify(generateKeyPair);
  const jwk = async (type, options, use, kid) => ({
    ...(await generate(type, options)).privateKey.export({ format: 'jwk' }),
    use,
    kid,
  });
  const keys = await Promise.all([
    jwk('rsa', { modulusLength: 2048 }, 'sig', 'demo-rsa-sig'),
    jwk('ec', { namedCurve: 'P-256' }, 'sig', 'demo-ec-sig'),
    jwk('rsa', { modulusLength: 2048 }, 'enc', 'demo-rsa-enc'),
  ]);
  return { keys };
}

function buildProvider(opts, jwks) {
  const configuration = {
    adapter: MemoryAdapter,
    jwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: { registration: '/register' },
    scopes: [...new Set([...SCOPES, ...opts.extraScopes])],
    responseTypes: ['code id_token', 'code', 'id_token', 'none'],
    clientAuthMethods: [
      'private_key_jwt',
      'tls_client_auth',
      'self_signed_tls_client_auth',
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'none',
    ],
    enabledJWA: {
      clientAuthSigningAlgValues: ['PS256', 'ES256', 'RS256', 'HS256', 'EdDSA'],
      idTokenSigningAlgValues: ['PS256', 'ES256', 'RS256'],
      requestObjectSigningAlgValues: ['PS256', 'ES256', 'RS256', 'HS256', 'EdDSA'],
      userinfoSigningAlgValues: ['PS256', 'ES256', 'RS256'],
      authorizationSigningAlgValues: ['PS256', 'ES256', 'RS256'],
    },
    extraClientMetadata: { properties: EXTRA_METADATA, validator: validateExtraMetadata },
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true, initialAccessToken: false },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // request_object_signing_alg / require_signed_request_object (by value only: request_uri
      // would make the provider fetch)
      requestObjects: { request: true, requestUri: false },
      // id_token_encrypted_response_* (Brazil, Australia)
      encryption: { enabled: true },
      // authorization_signed_response_alg (Australia, Brazil JARM)
      jwtResponseModes: { enabled: true },
      // userinfo_signed_response_alg
      jwtUserinfo: { enabled: true },
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        certificateBoundAccessTokens: false,
        getCertificate: clientCertificate,
        certificateAuthorized: () => true, // the gateway verified the chain
        certificateSubjectMatches: subjectMatches,
      },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 600,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: 600,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 3600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
    findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    // The provider fetches only what a client's use needs — jwks_uri when it verifies a
    // private_key_jwt assertion or a request object or encrypts an ID token,
    // sector_identifier_uri when one is registered — never at registration otherwise. Tests have
    // no network and the jwks_uri hosts are made up: every such request is logged and, unless
    // --allow-fetch, refused at once.
    httpOptions(url) {
      log(`outbound ${url.href} ${opts.allowFetch ? 'allowed' : 'refused (the demo AS makes no outbound requests; see --allow-fetch)'}`);
      return opts.allowFetch ? {} : { signal: AbortSignal.abort() };
    },
  };

  const provider = new Provider(opts.issuer, configuration);
  provider.proxy = true; // behind a gateway: X-Forwarded-Proto/Host make registration_client_uri

  provider.use(async (ctx, next) => {
    const registration = ctx.path === '/register' || ctx.path.startsWith('/register/');
    if (!registration) {
      await next();
      return;
    }
    let thrown;
    try {
      const json = (ctx.method === 'POST' || ctx.method === 'PUT') && ctx.is('application/json');
      if (!json || await rewriteJsonBody(ctx)) {
        await next();
      }
    } catch (err) {
      thrown = err;
    }
    const status = thrown ? (thrown.statusCode ?? thrown.status ?? 500) : ctx.status;
    const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body) ? ctx.body : {};
    const detail = status >= 400 && body.error
      ? ` ${body.error}${body.error_description ? `: ${body.error_description}` : ''}`
      : '';
    log(`${ctx.method} ${ctx.path} ${status}${detail}`);
    if (thrown) throw thrown;
  });

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`demo AS: server error on ${ctx.method} ${ctx.path}: ${err?.stack ?? err}\n`);
  });

  return provider;
}

const MAX_BODY = 56 * 1024; // oidc-provider's own limit

// Handing oidc-provider a parsed body is on purpose here: drop its one-time warning about that.
const consoleWarn = console.warn;
console.warn = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('already parsed request body detected')) return;
  consoleWarn(...args);
};

// Reads a JSON body, applies the Open Banking leniency and hands the result to oidc-provider as
// an already parsed body. A body that is not JSON is handed on as text: the provider answers it.
// False when the body was too large and has been answered here.
async function rewriteJsonBody(ctx) {
  const text = await new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    ctx.req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    ctx.req.on('end', () => {
      resolve(size > MAX_BODY ? null : Buffer.concat(chunks).toString('utf8'));
    });
    ctx.req.on('error', reject);
  });
  if (text === null) {
    ctx.status = 413;
    ctx.body = { error: 'invalid_request', error_description: 'request body too large' };
    return false;
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    ctx.request.body = text;
    return true;
  }
  ctx.request.body = openBankingLeniency(parsed);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Admin server (tests)

function adminHandler(req, res) {
  const reply = (status, body) => {
    const bytes = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length });
    res.end(bytes);
  };
  const url = new URL(req.url ?? '/', 'http://admin.invalid');
  if (req.method !== 'GET') {
    reply(405, { error: 'method_not_allowed' });
    return;
  }
  if (url.pathname === '/_test/clients') {
    const clients = [...store.keys()].filter((k) => k.startsWith('Client:') && live(k)).map((k) => k.slice('Client:'.length));
    reply(200, { clients });
    return;
  }
  const m = /^\/_test\/clients\/([^/]+)$/.exec(url.pathname);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      reply(400, { error: 'bad client id' });
      return;
    }
    const client = live(`Client:${id}`);
    if (client) reply(200, client);
    else reply(404, { error: 'not_found' });
    return;
  }
  reply(404, { error: 'not_found' });
}

// ---------------------------------------------------------------------------------------------
// Main

function listen(server, port, host, what) {
  return new Promise((resolve) => {
    server.once('error', (err) => fail(`cannot listen on ${host}:${port} (${what}): ${err.code ?? err.message}`));
    server.listen(port, host, () => resolve(server.address().port));
  });
}

const opts = options();
const jwks = await jwksPromise;
// Bound first, so that the default issuer can name the port even when asked for port 0.
let handler = (req, res) => {
  res.writeHead(503);
  res.end();
};
const app = createServer((req, res) => handler(req, res));
const admin = createServer(adminHandler);
const port = await listen(app, opts.port, opts.host, 'provider');
const adminPort = await listen(admin, opts.adminPort, opts.host, 'admin');
opts.issuer ??= `http://127.0.0.1:${port}`;
handler = buildProvider(opts, jwks).callback();
log(`demo AS ready: issuer ${opts.issuer}, registration http://${opts.host}:${port}/register, `
  + `admin http://${opts.host}:${adminPort}/_test/clients/{client_id}`);

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`demo AS stopping (${signal})`);
  let open = 2;
  const closed = () => {
    open -= 1;
    if (open === 0) process.exit(0);
  };
  for (const server of [app, admin]) {
    server.close(closed);
    server.closeAllConnections();
  }
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
