// Verifies the webhooks of Vigie's CRM sync (Standard Webhooks v1,
// symmetric signatures) in Node, with node:crypto only. The same check as
// receiver/receiver.go:
//   - webhook-timestamp within 5 minutes of the clock,
//   - a "v1,<base64>" entry of webhook-signature equal, in constant time,
//     to HMAC-SHA256(key, `${id}.${timestamp}.${body}`) under one of the
//     secrets (key = base64-decoded part after "whsec_"),
//   - webhook-id used to drop repeated deliveries.
//
// Use:
//   import { verify } from "./verify.mjs";
//   verify(["whsec_…"], headers, rawBody) // throws VerifyError, or returns the parsed message
//
//   WEBHOOK_SECRET=whsec_… PORT=8788 node verify.mjs     # a receiver printing messages
//   node verify.mjs --vectors testdata/vectors.json     # prints each vector's result as JSON
import { createHmac, timingSafeEqual } from "node:crypto";

export const TOLERANCE_SECONDS = 5 * 60;

/** VerifyError is a refused webhook; code is missing_headers, bad_timestamp, too_old, too_new or no_match. */
export class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function keyOf(secret) {
  const b64 = String(secret).trim().replace(/^whsec_/, "");
  const key = Buffer.from(b64, "base64");
  if (key.length === 0 || key.toString("base64").replace(/=+$/, "") !== b64.replace(/=+$/, "")) {
    throw new Error("secret is not whsec_ followed by base64");
  }
  return key;
}

function header(headers, name) {
  if (typeof headers.get === "function") return headers.get(name) ?? "";
  const v = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : (v ?? "");
}

/**
 * verifySignature checks id, timestamp, signature and body (a Buffer or
 * string exactly as received) against secrets; nowSeconds is the clock.
 */
export function verifySignature(secrets, id, timestamp, signature, body, nowSeconds = Math.floor(Date.now() / 1000)) {
  if (!id || !timestamp || !signature) throw new VerifyError("missing_headers", "missing webhook headers");
  if (!/^-?\d+$/.test(timestamp)) throw new VerifyError("bad_timestamp", "invalid webhook-timestamp");
  const age = nowSeconds - Number(timestamp);
  if (age > TOLERANCE_SECONDS) throw new VerifyError("too_old", "webhook timestamp too old");
  if (age < -TOLERANCE_SECONDS) throw new VerifyError("too_new", "webhook timestamp too new");
  const content = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), Buffer.from(body)]);
  const expected = secrets.map((s) => createHmac("sha256", keyOf(s)).update(content).digest());
  for (const entry of signature.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const got = Buffer.from(entry.slice(comma + 1), "base64");
    for (const want of expected) {
      if (got.length === want.length && timingSafeEqual(got, want)) return;
    }
  }
  throw new VerifyError("no_match", "no matching signature");
}

/** verify checks a request's headers and raw body and returns the parsed message. */
export function verify(secrets, headers, body, nowSeconds) {
  verifySignature(
    secrets,
    header(headers, "webhook-id"),
    header(headers, "webhook-timestamp"),
    header(headers, "webhook-signature"),
    body,
    nowSeconds,
  );
  return JSON.parse(Buffer.from(body).toString("utf8"));
}

async function runVectors(file) {
  const { readFile } = await import("node:fs/promises");
  const { vectors } = JSON.parse(await readFile(file, "utf8"));
  const results = vectors.map((v) => {
    try {
      verifySignature(v.secrets, v.id, v.timestamp, v.signature, v.body, v.now);
      return { name: v.name, valid: true, error: "" };
    } catch (e) {
      return { name: v.name, valid: false, error: e.code ?? String(e.message) };
    }
  });
  process.stdout.write(JSON.stringify(results) + "\n");
}

async function serve() {
  const { createServer } = await import("node:http");
  const secrets = (process.env.WEBHOOK_SECRET ?? "").split(/[ ,]+/).filter(Boolean);
  if (secrets.length === 0) {
    console.error("set WEBHOOK_SECRET to the destination's whsec_ secret");
    process.exit(1);
  }
  secrets.forEach(keyOf);
  const seen = new Map(); // webhook-id → time; keep a day, as the Go receiver
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const reply = (status, error) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(error ? JSON.stringify({ error }) : undefined);
      };
      if (req.method !== "POST") return reply(405, "use POST");
      let msg;
      try {
        msg = verify(secrets, req.headers, Buffer.concat(chunks));
      } catch (e) {
        return reply(e.code === "missing_headers" || e.code === "bad_timestamp" || !e.code ? 400 : 401, e.message);
      }
      const id = req.headers["webhook-id"];
      const now = Date.now();
      for (const [k, t] of seen) if (now - t > 86400000) seen.delete(k); else break;
      if (seen.has(id)) return reply(200);
      seen.set(id, now);
      process.stdout.write(JSON.stringify({ id, type: msg.type, timestamp: msg.timestamp, data: msg.data }) + "\n");
      reply(204);
    });
  });
  const port = Number(process.env.PORT ?? 8788);
  server.listen(port, "127.0.0.1", () => console.error(`crm-receiver (node) listening on 127.0.0.1:${port}`));
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("verify.mjs");
if (isMain) {
  const i = process.argv.indexOf("--vectors");
  if (i > 0) await runVectors(process.argv[i + 1]);
  else await serve();
}
