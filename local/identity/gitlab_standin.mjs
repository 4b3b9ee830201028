// A GitLab stand-in for tests and local mode: GitLab's OpenID provider paths and claims on
// loopback, served by panva's oidc-provider (a certified OpenID provider), with users, groups
// and SSH keys from a JSON file. Never part of a production path: production uses GitLab itself.
//
//   node gitlab_standin.mjs --config FILE --key PEM --port PORT --modules NODE_MODULES_DIR
//
// GitLab's shapes, as documented in doc/integration/openid_connect_provider.md:
// - paths: /oauth/authorize, /oauth/token, /oauth/userinfo, /oauth/discovery/keys,
//   /.well-known/openid-configuration, /<username>.keys (public SSH keys, one per line);
// - `sub` is the numeric user id as a string; `nickname` and `preferred_username` the username;
// - the ID token carries `groups_direct` (direct memberships), userinfo carries `groups`
//   (memberships including those inherited from ancestor groups).
// Test-only routes, which GitLab does not have:
// - GET /-/test-login?user=NAME sets a cookie; later logins in that cookie jar finish as NAME
//   without the form (so an HTTP client can log in by following redirects), as does an
//   authorization request with `login_hint=NAME`;
// - POST /-/ci-token (PRIVATE-TOKEN: admin token) mints a CI job ID token with the claims of
//   gitlab-contracts.md section 2.2, signed by the same key as the OIDC ID tokens (as GitLab's
//   JWKS serves both);
// - GET /api/v4/groups (PRIVATE-TOKEN: admin token): every group, GitLab's entity subset
//   {id, name, path, full_path, parent_id}.
import {
  createHash, createPrivateKey, randomUUID, sign, timingSafeEqual,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    key: { type: 'string' },
    port: { type: 'string' },
    modules: { type: 'string' },
    issuer: { type: 'string' },
  },
});
for (const name of ['config', 'key', 'port', 'modules']) {
  if (!args[name]) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}
const { default: Provider } = await import(
  pathToFileURL(join(args.modules, 'oidc-provider', 'lib', 'index.js')).href
);

const config = JSON.parse(readFileSync(args.config, 'utf8'));
const port = Number(args.port);
const issuer = args.issuer || `http://127.0.0.1:${port}`;
const privateKey = createPrivateKey(readFileSync(args.key));
const exported = privateKey.export({ format: 'jwk' });
// `kid` = the RFC 7638 thumbprint, as GitLab's keys have; CI tokens name it in their header.
const kid = createHash('sha256')
  .update(JSON.stringify({ e: exported.e, kty: 'RSA', n: exported.n }))
  .digest('base64url');
const signingJwk = { ...exported, kid, use: 'sig', alg: 'RS256' };
const TEST_USER_COOKIE = 'standin_test_user';

const users = new Map();
for (const user of config.users || []) users.set(String(user.id), user);
const byName = (name) => [...users.values()].find((u) => u.username === name);
const knownGroups = new Set(config.groups || []);
for (const user of users.values()) for (const group of user.groups || []) knownGroups.add(group);

// GitLab's `groups` claim: direct memberships and every subgroup below them (membership is
// inherited downwards); `groups_direct`: direct memberships only.
function inheritedGroups(user) {
  const direct = user.groups || [];
  return [...knownGroups]
    .filter((g) => direct.some((d) => g === d || g.startsWith(`${d}/`)))
    .sort();
}

function profileClaims(user) {
  return {
    sub: String(user.id),
    name: user.name || user.username,
    nickname: user.username,
    preferred_username: user.username,
    email: user.email || `${user.username}@example.test`,
    email_verified: true,
    profile: `${issuer}/${user.username}`,
    picture: `${issuer}/uploads/-/system/user/avatar/${user.id}/avatar.png`,
  };
}

function findAccount(ctx, sub) {
  const user = users.get(String(sub));
  if (!user) return undefined;
  return {
    accountId: String(user.id),
    async claims(use) {
      if (use === 'id_token') return { ...profileClaims(user), groups_direct: user.groups || [] };
      return { ...profileClaims(user), website: '', groups: inheritedGroups(user) };
    },
  };
}

// An in-memory store for oidc-provider's models (sessions, codes, tokens, grants).
class MemoryAdapter {
  static stores = new Map();
  constructor(name) {
    if (!MemoryAdapter.stores.has(name)) MemoryAdapter.stores.set(name, new Map());
    this.store = MemoryAdapter.stores.get(name);
    this.name = name;
  }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expires: expiresIn ? Date.now() + expiresIn * 1000 : null });
    if (payload.grantId) MemoryAdapter.grantIndex(payload.grantId).add([this.name, id]);
    if (payload.userCode) this.store.set(`userCode:${payload.userCode}`, { id });
    if (payload.uid) this.store.set(`uid:${payload.uid}`, { id });
  }
  async find(id) {
    const entry = this.store.get(id);
    if (!entry || (entry.expires && entry.expires < Date.now())) return undefined;
    return entry.payload;
  }
  async findByUserCode(code) {
    const ref = this.store.get(`userCode:${code}`);
    return ref ? this.find(ref.id) : undefined;
  }
  async findByUid(uid) {
    const ref = this.store.get(`uid:${uid}`);
    return ref ? this.find(ref.id) : undefined;
  }
  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) { this.store.delete(id); }
  async revokeByGrantId(grantId) {
    for (const [name, id] of MemoryAdapter.grantIndex(grantId)) {
      MemoryAdapter.stores.get(name)?.delete(id);
    }
  }
  static grantIndex(grantId) {
    const index = MemoryAdapter.stores.get('__grants') || new Map();
    MemoryAdapter.stores.set('__grants', index);
    if (!index.has(grantId)) index.set(grantId, new Set());
    return index.get(grantId);
  }
}

const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients: (config.clients || []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  })),
  jwks: { keys: [signingJwk] },
  findAccount,
  // GitLab's OAuth scopes beside OpenID's; its group claims come with `openid`.
  scopes: ['openid', 'profile', 'email', 'offline_access', 'read_user', 'read_api', 'api'],
  claims: {
    openid: ['sub', 'groups', 'groups_direct'],
    profile: ['name', 'nickname', 'preferred_username', 'profile', 'picture', 'website'],
    email: ['email', 'email_verified'],
  },
  // GitLab puts the profile claims in the ID token too, not only behind userinfo.
  conformIdTokenClaims: false,
  routes: {
    authorization: '/oauth/authorize',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    jwks: '/oauth/discovery/keys',
    revocation: '/oauth/revoke',
    introspection: '/oauth/introspect',
    end_session: '/oauth/logout',
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: [randomUUID()] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // GitLab asks a user to authorize an application once per application; trusted (first-party)
  // applications are authorized without asking, which is how the platform registers its own.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    await grant.save();
    return grant;
  },
  ttl: {
    AccessToken: 7200,
    AuthorizationCode: 600,
    IdToken: 120,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
    RefreshToken: 86400,
  },
});

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, message) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · GitLab stand-in</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}
.note{color:#666;font-size:.85rem}.error{color:#a00}</style></head>
<body><h1>Sign in</h1><p class="note">GitLab stand-in for tests and local mode.</p>
${message ? `<p class="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="sign-in">Sign in</button></form></body></html>`;
}

function send(res, status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req, limit = 65536) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function cookie(req, name) {
  for (const part of (req.headers.cookie || '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

function isAdmin(req) {
  const given = Buffer.from(String(req.headers['private-token'] || ''));
  const wanted = Buffer.from(String(config.admin_token || ''));
  return wanted.length > 0 && given.length === wanted.length && timingSafeEqual(given, wanted);
}

const b64url = (data) => Buffer.from(data).toString('base64url');

// A CI job ID token as GitLab mints it for `id_tokens:` (gitlab-contracts.md section 2.2).
function ciToken(request) {
  const user = byName(request.user);
  if (!user) throw new Error(`unknown user ${request.user}`);
  if (!request.aud || !request.project_path) throw new Error('aud and project_path are required');
  const now = Math.floor(Date.now() / 1000);
  const ref = request.ref || 'main';
  const namespace = request.project_path.split('/').slice(0, -1).join('/');
  const claims = {
    namespace_id: String(request.namespace_id || 1),
    namespace_path: namespace,
    project_id: String(request.project_id || 1),
    project_path: request.project_path,
    user_id: String(user.id),
    user_login: user.username,
    user_email: user.email || `${user.username}@example.test`,
    pipeline_id: String(request.pipeline_id || 1),
    pipeline_source: request.pipeline_source || 'push',
    job_id: String(request.job_id || 1),
    ref,
    ref_type: 'branch',
    ref_path: `refs/heads/${ref}`,
    ref_protected: String(Boolean(request.ref_protected)),
    runner_id: Number(request.runner_id || 1),
    runner_environment: 'self-hosted',
    sha: request.sha || '0'.repeat(40),
    project_visibility: 'internal',
    groups_direct: user.groups || [],
    iss: issuer,
    sub: `project_path:${request.project_path}:ref_type:branch:ref:${ref}`,
    aud: request.aud,
    iat: now,
    nbf: now - 5,
    exp: now + Number(request.ttl || 300),
    jti: randomUUID(),
  };
  const header = { kid: signingJwk.kid, typ: 'JWT', alg: 'RS256' };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), privateKey).toString('base64url')}`;
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'interaction mismatch', 'text/plain');
  if (action === 'login' && req.method === 'POST') {
    const form = new URLSearchParams(await readBody(req));
    const user = byName(form.get('username') || '');
    const given = Buffer.from(form.get('password') || '');
    const wanted = Buffer.from(user?.password || '');
    if (!user || !user.password || given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
      return send(res, 401, loginPage(uid, 'Invalid login or password.'), 'text/html; charset=utf-8');
    }
    return provider.interactionFinished(req, res, { login: { accountId: String(user.id) } });
  }
  if (details.prompt.name === 'login') {
    const hinted = byName(details.params.login_hint || '') || byName(cookie(req, TEST_USER_COOKIE) || '');
    if (hinted) {
      return provider.interactionFinished(req, res, { login: { accountId: String(hinted.id) } });
    }
    return send(res, 200, loginPage(uid), 'text/html; charset=utf-8');
  }
  // Only the login prompt is interactive here (grants are given by loadExistingGrant).
  return provider.interactionFinished(req, res, {
    error: 'access_denied', error_description: `unexpected prompt ${details.prompt.name}`,
  });
}

const providerCallback = provider.callback();

async function handle(req, res) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  if (path === '/-/health') return send(res, 200, 'GitLab OK', 'text/plain');
  let match = path.match(/^\/interaction\/([\w-]+)(?:\/(login))?$/);
  if (match) return interaction(req, res, match[1], match[2]);
  if (path === '/-/test-login') {
    const user = byName(url.searchParams.get('user') || '');
    if (!user) return send(res, 404, `unknown user ${url.searchParams.get('user')}\n`, 'text/plain');
    res.setHeader('Set-Cookie', `${TEST_USER_COOKIE}=${encodeURIComponent(user.username)}; Path=/; HttpOnly; SameSite=Lax`);
    return send(res, 200, `next logins finish as ${user.username}\n`, 'text/plain');
  }
  if (path === '/-/ci-token' && req.method === 'POST') {
    if (!isAdmin(req)) return send(res, 401, { message: '401 Unauthorized' });
    try {
      return send(res, 201, { token: ciToken(JSON.parse(await readBody(req))) });
    } catch (error) {
      return send(res, 400, { message: String(error.message) });
    }
  }
  if (path === '/api/v4/groups' && req.method === 'GET') {
    if (!isAdmin(req)) return send(res, 401, { message: '401 Unauthorized' });
    const paths = [...knownGroups].sort();
    return send(res, 200, paths.map((full, i) => ({
      id: i + 1,
      name: full.split('/').pop(),
      path: full.split('/').pop(),
      full_path: full,
      parent_id: full.includes('/') ? paths.indexOf(full.split('/').slice(0, -1).join('/')) + 1 || null : null,
    })));
  }
  match = path.match(/^\/([\w.-]+)\.keys$/);
  if (match && req.method === 'GET') {
    const user = byName(match[1]);
    if (!user) return send(res, 404, '', 'text/plain');
    const keys = (user.ssh_keys || []).join('\n');
    return send(res, 200, keys ? `${keys}\n` : '', 'text/plain; charset=utf-8');
  }
  return providerCallback(req, res);
}

createServer((req, res) => {
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) send(res, 500, { message: 'stand-in error' });
  });
}).listen(port, '127.0.0.1', () => console.log(`GitLab stand-in ${issuer}`));
