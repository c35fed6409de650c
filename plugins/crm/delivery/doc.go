// Package delivery is the delivery core shared by Vigie's CRM connectors
// (plugins/crm/webhook, hubspot, brevo): the change model (Change, with a
// deterministic idempotency ID), the Connector interface the crm plugin
// calls and its per-change Result, retry classification (Segment's
// classes: 4xx final except 408, 423 and 429; 5xx retried except 501;
// network errors and timeouts retried), exponential backoff with jitter
// honouring Retry-After, typed errors with a redacted body excerpt for
// dead letters, a per-destination token-bucket Limiter that follows the
// vendors' rate-limit headers and can pause a destination, an SSRF-safe
// HTTP client (address checked at connect time, redirects never
// followed), and Secret, which never prints.
//
// It depends only on the standard library and golang.org/x/time/rate.
package delivery
