// A webhook sender as a CRM written in Node would be: fetch, signed with the npm
// standardwebhooks package. Usage: node send.mjs URL SECRET < envelope.json
// Prints the answer as one JSON line: {"status": N, "body": ...}.
import { Webhook } from "standardwebhooks";
import { randomUUID } from "node:crypto";

const [url, secret] = process.argv.slice(2);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const body = Buffer.concat(chunks);
const id = `msg_${randomUUID()}`;
const at = new Date();
const signature = new Webhook(secret).sign(id, at, body);
const answer = await fetch(url, {
  method: "POST",
  body,
  headers: {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": signature,
  },
});
console.log(JSON.stringify({ status: answer.status, body: await answer.json() }));
