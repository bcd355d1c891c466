// docs/frontend/ratekeeperFetch.js against a live ratekeeper on loopback.
//
// Run by tests/frontend/test_fetch_wrapper.py, which starts the service and passes
// RATEKEEPER_TEST_URL and RATEKEEPER_TEST_API_KEY. `getSession` below plays the app's backend:
// it mints sessions through the REST API with the API key. No real sleeps, no wall clock.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createRatekeeperFetch } from "../../docs/frontend/ratekeeperFetch.js";

const BASE = process.env.RATEKEEPER_TEST_URL;
const API_KEY = process.env.RATEKEEPER_TEST_API_KEY;
const SKIP = BASE && API_KEY ? false : "RATEKEEPER_TEST_URL and RATEKEEPER_TEST_API_KEY not set";
const REST = {
  Authorization: `Bearer ${API_KEY}`,
  "OpenAI-Beta": "chatkit_beta=v1",
  "Content-Type": "application/json",
};
const JSON_HEADERS = { "Content-Type": "application/json" };
const THREADS_LIST = JSON.stringify({ type: "threads.list", params: {}, metadata: {} });

/** The app's backend: mints sessions with the API key and remembers each one. */
function backend({ limit = 100, seconds = 600 } = {}) {
  const sessions = [];
  async function getSession() {
    const response = await fetch(`${BASE}/v1/chatkit/sessions`, {
      method: "POST",
      headers: REST,
      body: JSON.stringify({
        user: "u_frontend",
        workflow: { id: "wf_frontend" },
        rate_limits: { max_requests_per_1_minute: limit },
        expires_after: { anchor: "created_at", seconds },
      }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    const session = await response.json();
    sessions.push(session);
    return session;
  }
  return { sessions, getSession };
}

async function cancel(session) {
  const url = `${BASE}/v1/chatkit/sessions/${session.id}/cancel`;
  const response = await fetch(url, { method: "POST", headers: REST });
  assert.equal(response.status, 200, await response.text());
}

/** The real fetch, recording what each request carried and how it was answered. */
function recordingFetch() {
  const calls = [];
  async function spy(input, init = {}) {
    const response = await fetch(input, init);
    const call = {
      authorization: new Headers(init.headers).get("authorization"),
      status: response.status,
      headers: response.headers,
      code: null,
    };
    if (response.status >= 400) call.code = (await response.clone().json()).error.code;
    calls.push(call);
    return response;
  }
  return { calls, spy };
}

const chatkit = (fetchFn, body = THREADS_LIST, headers = JSON_HEADERS) =>
  fetchFn(`${BASE}/chatkit`, { method: "POST", headers, body });

describe("ratekeeperFetch against a live ratekeeper", { skip: SKIP }, () => {
  test("the first call fetches a session and sends its secret", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });

    const first = await chatkit(rkFetch);
    const second = await chatkit(rkFetch);

    assert.equal(first.status, 200);
    assert.ok(Array.isArray((await first.json()).data));
    assert.equal(second.status, 200);
    assert.equal(app.sessions.length, 1);
    const secret = `Bearer ${app.sessions[0].client_secret}`;
    assert.deepEqual(
      net.calls.map((c) => c.authorization),
      [secret, secret],
    );
  });

  test("a cancelled session is replaced once and the request retried", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });
    assert.equal((await chatkit(rkFetch)).status, 200);
    await cancel(app.sessions[0]);

    const response = await chatkit(rkFetch);

    assert.equal(response.status, 200);
    assert.equal(app.sessions.length, 2);
    assert.deepEqual(
      net.calls.map((c) => [c.status, c.code, c.authorization]),
      [
        [200, null, `Bearer ${app.sessions[0].client_secret}`],
        [401, "session_cancelled", `Bearer ${app.sessions[0].client_secret}`],
        [200, null, `Bearer ${app.sessions[1].client_secret}`],
      ],
    );
  });

  for (const [kind, makeBody] of [
    ["ArrayBuffer", () => new TextEncoder().encode(THREADS_LIST).buffer],
    ["Uint8Array", () => new TextEncoder().encode(THREADS_LIST)],
    ["Blob", () => new Blob([THREADS_LIST], { type: "application/json" })],
  ]) {
    test(`a ${kind} body is sent again after a new session`, async () => {
      const app = backend();
      const net = recordingFetch();
      const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });
      await chatkit(rkFetch);
      await cancel(app.sessions[0]);

      const response = await chatkit(rkFetch, makeBody());

      assert.equal(response.status, 200, await response.clone().text());
      assert.ok(Array.isArray((await response.json()).data));
      assert.deepEqual(
        net.calls.map((c) => c.status),
        [200, 401, 200],
      );
    });
  }

  test("a FormData body is sent again after a new session", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });
    await chatkit(rkFetch);
    await cancel(app.sessions[0]);
    const form = new FormData();
    form.append("file", new Blob(["hello"], { type: "text/plain" }), "notes.txt");

    const response = await rkFetch(`${BASE}/chatkit`, { method: "POST", body: form });

    // Admitted with the new secret, then refused as multipart: the body went out again.
    assert.equal(response.status, 415);
    assert.deepEqual(
      net.calls.map((c) => [c.status, c.code]),
      [
        [200, null],
        [401, "session_cancelled"],
        [415, "unsupported_media_type"],
      ],
    );
  });

  test("a ReadableStream body is not sent twice: the 401 is returned", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });
    await chatkit(rkFetch);
    await cancel(app.sessions[0]);
    const body = new Blob([THREADS_LIST]).stream();

    const response = await rkFetch(`${BASE}/chatkit`, {
      method: "POST",
      headers: JSON_HEADERS,
      body,
      duplex: "half",
    });

    assert.equal(response.status, 401);
    assert.equal((await response.json()).error.code, "session_cancelled");
    assert.equal(app.sessions.length, 1);
    assert.equal(net.calls.length, 2);
  });

  test("a Request input is sent again after a new session", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });
    await chatkit(rkFetch);
    await cancel(app.sessions[0]);
    const request = new Request(`${BASE}/chatkit`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: THREADS_LIST,
    });

    const response = await rkFetch(request);

    assert.equal(response.status, 200, await response.clone().text());
    assert.deepEqual(
      net.calls.map((c) => c.status),
      [200, 401, 200],
    );
  });

  test("a 401 the session cannot cure passes through", async () => {
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({
      getSession: backend().getSession,
      fetch: net.spy,
    });
    await chatkit(rkFetch);

    // An API-key route with a client secret: 401 invalid_api_key, not a session's end.
    const response = await rkFetch(`${BASE}/v1/chatkit/threads`, { headers: REST });

    assert.equal(response.status, 401);
    assert.equal((await response.json()).error.code, "invalid_api_key");
    assert.equal(net.calls.length, 2);
  });

  test("a 429 waits the server's retry-after and retries once", async () => {
    const app = backend({ limit: 1 });
    const net = recordingFetch();
    const waits = [];
    const rkFetch = createRatekeeperFetch({
      getSession: app.getSession,
      fetch: net.spy,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    assert.equal((await chatkit(rkFetch)).status, 200);

    const response = await chatkit(rkFetch);

    assert.deepEqual(
      net.calls.map((c) => [c.status, c.code]),
      [
        [200, null],
        [429, "rate_limit_exceeded"],
        [429, "rate_limit_exceeded"],
      ],
    );
    const headers = net.calls[1].headers;
    const told = headers.has("retry-after-ms")
      ? Number(headers.get("retry-after-ms"))
      : Number(headers.get("retry-after")) * 1000;
    assert.ok(told > 0);
    assert.deepEqual(waits, [Math.min(told, 60_000)]);
    // The retried 429 is the caller's, unread, with its headers and body.
    assert.equal(response.status, 429);
    assert.equal(response.bodyUsed, false);
    assert.ok(response.headers.has("retry-after"));
    assert.equal((await response.json()).error.code, "rate_limit_exceeded");
    assert.equal(app.sessions.length, 1);
  });

  test("a 429's wait is capped at maxRetryAfterMs", async () => {
    const app = backend({ limit: 1 });
    const waits = [];
    const rkFetch = createRatekeeperFetch({
      getSession: app.getSession,
      maxRetryAfterMs: 250,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    await chatkit(rkFetch);

    const response = await chatkit(rkFetch);

    assert.equal(response.status, 429);
    assert.deepEqual(waits, [250]);
  });

  test("a new session is fetched ahead of expires_at", async () => {
    const app = backend({ seconds: 60 });
    const net = recordingFetch();
    let clock = Date.now();
    const rkFetch = createRatekeeperFetch({
      getSession: app.getSession,
      fetch: net.spy,
      refreshAheadMs: 30_000,
      now: () => clock,
    });
    assert.equal((await chatkit(rkFetch)).status, 200);
    const refreshAt = app.sessions[0].expires_at * 1000 - 30_000;

    clock = refreshAt - 1;
    assert.equal((await chatkit(rkFetch)).status, 200);
    assert.equal(app.sessions.length, 1);

    clock = refreshAt + 1;
    assert.equal((await chatkit(rkFetch)).status, 200);
    assert.equal(app.sessions.length, 2);
    assert.deepEqual(
      net.calls.map((c) => [c.status, c.authorization]),
      [
        [200, `Bearer ${app.sessions[0].client_secret}`],
        [200, `Bearer ${app.sessions[0].client_secret}`],
        [200, `Bearer ${app.sessions[1].client_secret}`],
      ],
    );
  });

  test("a streaming threads.create passes through unread", async () => {
    const app = backend();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession });
    const body = JSON.stringify({
      type: "threads.create",
      params: {
        input: {
          content: [{ type: "input_text", text: "Hello!" }],
          attachments: [],
          inference_options: {},
        },
      },
      metadata: {},
    });

    const response = await chatkit(rkFetch, body);

    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    assert.equal(response.bodyUsed, false);
    const events = (await response.text())
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .map((line) => JSON.parse(line.slice("data: ".length)));
    assert.equal(events[0].type, "thread.created");
    assert.equal(events.at(-1).type, "thread.item.done");
    assert.equal(events.at(-1).item.content[0].text, "Hello!");
  });

  test("concurrent calls share one session fetch, first and after a cancel", async () => {
    const app = backend();
    const net = recordingFetch();
    const rkFetch = createRatekeeperFetch({ getSession: app.getSession, fetch: net.spy });

    const first = await Promise.all([1, 2, 3, 4].map(() => chatkit(rkFetch)));
    assert.deepEqual(
      first.map((r) => r.status),
      [200, 200, 200, 200],
    );
    assert.equal(app.sessions.length, 1);

    await cancel(app.sessions[0]);
    const second = await Promise.all([1, 2, 3, 4].map(() => chatkit(rkFetch)));
    assert.deepEqual(
      second.map((r) => r.status),
      [200, 200, 200, 200],
    );
    assert.equal(app.sessions.length, 2);
    const newSecret = `Bearer ${app.sessions[1].client_secret}`;
    assert.equal(net.calls.filter((c) => c.authorization === newSecret).length, 4);
  });

  test("a getSession failure rejects the call", async () => {
    const rkFetch = createRatekeeperFetch({
      getSession: async () => {
        throw new Error("backend down");
      },
    });

    await assert.rejects(chatkit(rkFetch), /backend down/);
  });
});
