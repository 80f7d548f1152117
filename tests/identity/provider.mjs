// A real OpenID provider for the tests (panva's oidc-provider), on 127.0.0.1 only.
// argv: port, then a JSON config: {client_id, client_secret, redirect_uris, groups: {login: [group]}}.
// Its development sign-in page accepts any login name: "alice" signs in as subject "alice",
// email alice@example.test (verified), with the groups the config gives that name.
import Provider from "oidc-provider";

const port = Number(process.argv[2]);
const config = JSON.parse(process.argv[3]);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: config.client_id, client_secret: config.client_secret, redirect_uris: config.redirect_uris,
    grant_types: ["authorization_code"], response_types: ["code"], token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
  scopes: ["openid", "email", "profile", "groups"],
  conformIdTokenClaims: false,  // the ID token carries the claims (email, groups) the RP reads
  cookies: { keys: ["test-only-not-a-secret"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true, name: id, groups: config.groups[id] || [] };
      },
    };
  },
});
provider.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
