// A real, certified OpenID Connect provider (the `oidc-provider` npm package) on a loopback port,
// for the integration tests of `oidc_auth`, `google_auth` and `oidc_tokens`.
//
//   node oidc-provider.mjs SETTINGS.json
//
// SETTINGS.json: {"port": 0, "clients": [...oidc-provider client metadata...],
//                 "accounts": {"alice": {"email": "...", "groups": [...], ...}},
//                 "id_token_ttl": 3600, "access_token_ttl": 3600}
//
// Prints `listening http://127.0.0.1:PORT` once ready. The interactive steps are automatic:
// the login prompt signs in the account chosen with `POST /_test/login?user=NAME` (default: the
// first account) and consent is granted for what the client asked. Test controls:
//   POST /_test/login?user=NAME       who signs in next
//   POST /_test/disable?user=NAME     the account disappears (refresh and userinfo then fail)
//   POST /_test/claims?user=NAME      replace the account's claims (JSON body)
import http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = new Map(Object.entries(settings.accounts ?? {}));
let current = [...accounts.keys()][0];

const server = http.createServer();
await new Promise((resolve) => server.listen(settings.port ?? 0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const configuration = {
  clients: settings.clients,
  async findAccount(ctx, id) {
    const claims = accounts.get(id);
    if (!claims) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'hd'],
    groups: ['groups'],
    ci: ['repository', 'repository_owner', 'ref', 'project_path'],
  },
  // Every claim the scopes allow goes into the ID token too (as Google and most IdPs do).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
  },
  // Like Google's access_type=offline: a refresh token whenever the client may use one.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  interactions: {
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  // Consent is implicit: a grant for everything the client asked for.
  async loadExistingGrant(ctx) {
    const accountId = ctx.oidc.session.accountId;
    if (!accountId) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    grant.addOIDCClaims(Object.values(configuration.claims).flat());
    await grant.save();
    return grant;
  },
  pkce: { methods: ['S256'], required: () => true },
  ttl: {
    AccessToken: settings.access_token_ttl ?? 3600,
    IdToken: settings.id_token_ttl ?? 3600,
    AuthorizationCode: 60,
    RefreshToken: 86400,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
  },
  cookies: { keys: ['registry-auth-tests-only-cookie-key'] },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
const callback = provider.callback();

server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/_test/') && req.method === 'POST') {
      const user = url.searchParams.get('user');
      const body = await new Promise((resolve) => {
        let data = '';
        req.on('data', (c) => { data += c; });
        req.on('end', () => resolve(data));
      });
      if (url.pathname === '/_test/login') current = user;
      else if (url.pathname === '/_test/disable') accounts.delete(user);
      else if (url.pathname === '/_test/claims') accounts.set(user, JSON.parse(body));
      res.statusCode = 204;
      res.end();
      return;
    }
    if (url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      const result = details.prompt.name === 'login'
        ? { login: { accountId: current } }
        : { consent: {} };
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
      return;
    }
    callback(req, res);
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

process.stdout.write(`listening ${issuer}\n`);
