"""Emulator of the Didomi API (`https://api.didomi.io/v1/`): sessions, consent events and users,
marketplace `webhook-http` integrations and the webhook deliveries Didomi makes to them.

`DidomiEmulator` (in `emulator.py`) is the entry point; the other modules each own one part:
`errors` (feathers-style error bodies), `models` (input validation), `inputs` (query and body
reading), `merge` (consent merging), `records` (stored shapes), `store` (users, events,
indexes), `auth` (session JWTs), `options` (tunables), `integrations` (marketplace registry),
`delivery` (background webhook delivery), `consents_api`/`marketplace_api` (handlers) and
`routes` (the request pipeline: stats, faults, auth, organization check).
"""
