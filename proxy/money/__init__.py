"""Money: the price table (what a request costs) and budgets (how much a person, a team key or the whole
deployment may spend per period). Pure data and arithmetic in integer micro-dollars; the admission that
reserves and settles them is :mod:`proxy.team.policy`."""
