"""Who a person is beyond a key: OpenID Connect sign-in, a trusted proxy's header, sessions, and which
user (or admin) a signed-in person is. The edge asks :mod:`proxy.identity.edge` once per request."""
