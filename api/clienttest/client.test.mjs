// Drives walhook's management API with WooCommerce's official JavaScript
// client, @woocommerce/woocommerce-rest-api.
//
// Environment:
//   WALHOOK_URL   the site URL the client is given (http:// for oauth, https:// for basic)
//   WC_KEY        consumer key (read_write)
//   WC_SECRET     consumer secret
//   WC_MODE       "oauth" (OAuth 1.0a over http) or "basic" (HTTP Basic over https;
//                 the server certificate is not verified)
//   RECEIVER_URL  delivery URL for the webhooks created here
//
// It leaves one active webhook for order.created pointing at RECEIVER_URL
// and prints its id as a line "WEBHOOK_ID=<n>" (under "node --test" the
// runner passes it on as the TAP comment "# WEBHOOK_ID=<n>"; run as
// "node client.test.mjs" it is printed bare).
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import WooCommerceRestApiModule from "@woocommerce/woocommerce-rest-api";

const WooCommerceRestApi = WooCommerceRestApiModule.default ?? WooCommerceRestApiModule;

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set`);
  return v;
}

const url = env("WALHOOK_URL");
const mode = env("WC_MODE");
const receiver = env("RECEIVER_URL");
assert.ok(mode === "oauth" || mode === "basic", `WC_MODE must be oauth or basic, not ${mode}`);
assert.equal(/^https:/i.test(url), mode === "basic", "basic needs an https:// WALHOOK_URL, oauth an http:// one");

const api = new WooCommerceRestApi({
  url,
  consumerKey: env("WC_KEY"),
  consumerSecret: env("WC_SECRET"),
  version: "wc/v3",
  timeout: 10000,
  axiosConfig: mode === "basic" ? { httpsAgent: new https.Agent({ rejectUnauthorized: false }) } : {},
});

// failure returns the error response of a request expected to fail.
async function failure(promise) {
  try {
    const res = await promise;
    assert.fail(`expected an error, got HTTP ${res.status}`);
  } catch (err) {
    if (!err.response) throw err;
    return err.response;
  }
}

test("WooCommerce JavaScript client against walhook", async (t) => {
  const ids = [];

  await t.test("create", async () => {
    for (const n of [1, 2, 3]) {
      const res = await api.post("webhooks", { name: `js ${n}`, topic: "product.updated", delivery_url: receiver });
      assert.equal(res.status, 201);
      assert.equal(res.data.status, "active");
      assert.equal(res.data.topic, "product.updated");
      assert.equal(typeof res.data.secret, "string");
      assert.match(res.headers.location, new RegExp(`/wp-json/wc/v3/webhooks/${res.data.id}$`));
      ids.push(res.data.id);
    }
  });

  await t.test("list with paging headers", async () => {
    const first = await api.get("webhooks", { per_page: 2, include: ids, order: "asc", orderby: "id" });
    assert.equal(first.status, 200);
    assert.deepEqual(first.data.map((w) => w.id), ids.slice(0, 2));
    assert.equal(first.headers["x-wp-total"], "3");
    assert.equal(first.headers["x-wp-totalpages"], "2");
    assert.match(first.headers.link, /[?&]page=2>; rel="next"/);
    assert.ok(!("secret" in first.data[0]), "secret listed in the view context");

    const second = await api.get("webhooks", { per_page: 2, page: 2, include: ids, order: "asc", orderby: "id" });
    assert.deepEqual(second.data.map((w) => w.id), ids.slice(2));
    assert.match(second.headers.link, /[?&]page=1>; rel="prev"/);

    const all = await api.get("webhooks", { status: "active", search: "js" });
    assert.ok(all.data.length >= 3);
  });

  await t.test("read", async () => {
    const res = await api.get(`webhooks/${ids[0]}`);
    assert.equal(res.data.id, ids[0]);
    assert.equal(res.data.name, "js 1");
    assert.equal(res.data.resource, "product");
    assert.equal(res.data.event, "updated");
    assert.ok(!("secret" in res.data));
    assert.match(res.data._links.self[0].href, new RegExp(`/wp-json/wc/v3/webhooks/${ids[0]}$`));
  });

  await t.test("update status", async () => {
    const res = await api.put(`webhooks/${ids[0]}`, { status: "paused" });
    assert.equal(res.status, 200);
    assert.equal(res.data.status, "paused");
  });

  await t.test("batch", async () => {
    const res = await api.post("webhooks/batch", {
      create: [{ name: "js batch", topic: "coupon.created", delivery_url: receiver }],
      update: [{ id: ids[1], status: "disabled" }],
      delete: [ids[2]],
    });
    assert.equal(res.status, 200);
    assert.equal(res.data.create.length, 1);
    assert.equal(res.data.create[0].topic, "coupon.created");
    assert.equal(res.data.update[0].status, "disabled");
    assert.equal(res.data.delete[0].id, ids[2]);
    ids.splice(2, 1, res.data.create[0].id);
  });

  await t.test("delete with force", async () => {
    const trash = await failure(api.delete(`webhooks/${ids[0]}`));
    assert.equal(trash.status, 501);
    assert.equal(trash.data.code, "woocommerce_rest_trash_not_supported");

    for (const id of ids) {
      const res = await api.delete(`webhooks/${id}`, { force: true });
      assert.equal(res.status, 200);
      assert.equal(res.data.id, id);
    }
    const gone = await failure(api.get(`webhooks/${ids[0]}`));
    assert.equal(gone.status, 400);
    assert.equal(gone.data.code, "woocommerce_rest_shop_webhook_invalid_id");
  });

  await t.test("invalid topic", async () => {
    const res = await failure(api.post("webhooks", { topic: "order.exploded", delivery_url: receiver }));
    assert.equal(res.status, 400);
    assert.equal(res.data.code, "woocommerce_rest_shop_webhook_invalid_topic");
    assert.equal(res.data.data.status, 400);
  });

  await t.test("leave an order.created webhook", async () => {
    const res = await api.post("webhooks", { name: "walhook order.created", topic: "order.created", delivery_url: receiver });
    assert.equal(res.status, 201);
    assert.equal(res.data.status, "active");
    process.stdout.write(`WEBHOOK_ID=${res.data.id}\n`);
  });
});
