"""The routes.yaml texts and task modules that several test modules load (``{module}`` is replaced by the task
module's name when the root conftest's ``write_routes`` writes them). No I/O."""

from __future__ import annotations

# The tasks every routes text below names: `write_routes` writes them beside routes.yaml.
TASKS_CODE = """
from gateway import task

@task(id="deploy-preview")
async def deploy_preview(payload, ctx):
    return payload

@task(id="record-payment")
async def record_payment(payload, ctx):
    return payload

@task(id="sync-subscription")
def sync_subscription(payload, ctx):
    return payload
"""

# The routes.yaml `write_routes` and `load_config` write by default: one source of each kind of scheme.
ROUTES = """
tasks: [{module}]
sources:
  github:
    verify: github
    secret: gh-secret
  stripe:
    verify: stripe
    secrets: [whsec_new_stripe_secret, whsec_old_stripe_secret]
  billing:
    verify: standard-webhooks
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  acme:
    verify: {scheme: hmac, header: X-Acme-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: acme-secret
    dedupe: headers.X-Acme-Delivery
    max_body: 1KiB
  open:
    verify: none
routes:
  - id: deploy-on-push
    source: github
    event: push
    when: {body.ref: refs/heads/main}
    task: deploy-preview
    input: {repo: body.repository.full_name, sha: body.after}
  - id: audit-pushes
    source: github
    event: push
    task: record-payment
  - id: paid-invoices
    source: stripe
    event: invoice.*
    task: record-payment
  - id: billing
    source: billing
    task: sync-subscription
  - id: acme
    source: acme
    task: sync-subscription
"""


# A history to replay: v1, then v2 with more routes (tests/integration/records).
ROUTES_V1 = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret}
  open: {verify: none}
routes:
  - id: deploy-on-push
    source: github
    event: push
    when: {body.ref: refs/heads/main}
    task: deploy-preview
    input: {sha: body.after}
"""


# v2 adds two routes: one for every push, one for the `open` source that v1 left unrouted.
ROUTES_V2 = (
    ROUTES_V1
    + """
  - id: audit-pushes
    source: github
    event: push
    task: record-payment
  - id: open-all
    source: open
    task: sync-subscription
"""
)


# Retention 1h, except `archive` (kept forever).
ROUTES_RETAINED = """
tasks: [{module}]
retention: 1h
sources:
  github: {verify: github, secret: gh-secret}
  open: {verify: none}
  archive: {verify: none, retention: forever}
routes:
  - id: deploy-on-push
    source: github
    event: push
    task: deploy-preview
"""


# The remote-key presets (plaid, pubsub, paypal, jwt); ANCHOR is replaced by PayPal's trust anchor's path.
REMOTE_ROUTES = """
tasks: [{module}]
sources:
  plaid:
    verify: plaid
    secret: plaid-secret-value
    client_id: client-123
    environment: sandbox
  pubsub:
    verify: pubsub
    audience: https://hooks.example.com/hooks/pubsub
    service_account: pusher@project.iam.gserviceaccount.com
  paypal:
    verify: paypal
    webhook_id: 8PT597110X687430LKGECATA
    trust_anchors: [ANCHOR]
  static:
    verify: jwt
    secret: a-shared-jwt-secret-of-at-least-32-bytes
    algorithms: [HS256]
    audience: gateway
    issuer: https://issuer.example
  keyed:
    verify: jwt
    jwks_url: https://issuer.example/.well-known/jwks.json
    algorithms: [RS256]
routes:
  - {id: plaid, source: plaid, task: sync-subscription}
  - {id: pubsub, source: pubsub, task: sync-subscription}
  - {id: paypal, source: paypal, task: sync-subscription}
  - {id: static, source: static, task: sync-subscription}
  - {id: keyed, source: keyed, task: sync-subscription}
"""
