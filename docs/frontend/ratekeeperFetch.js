// ratekeeperFetch.js: a `fetch` for ChatKit's custom-backend mode that carries a ratekeeper
// session's client secret and recovers from its ends (expiry, cancellation, rate limit).
//
// An ES module with no dependencies, for browsers and Node 18+. Copy it into your front end:
//
//   import { createRatekeeperFetch } from "./ratekeeperFetch.js";
//   const fetch = createRatekeeperFetch({ getSession: () => myBackend.mintChatKitSession() });
//   useChatKit({ api: { url: "https://chat.example.com/chatkit", domainKey, fetch } });
//
// See docs/frontend.md. The secret is never logged: this module writes nothing to the console.

/** `error.code` values of a 401 that a new session cures. */
const SESSION_ENDED = new Set(["session_expired", "session_cancelled", "invalid_client_secret"]);

/**
 * What the app's backend returns after minting a session with `POST /v1/chatkit/sessions`
 * (the whole `chatkit.session` object may be passed; only these two fields are read).
 *
 * @typedef {object} RatekeeperSession
 * @property {string} client_secret The secret to send as `Authorization: Bearer …`.
 * @property {number} expires_at When the session ends, in Unix seconds.
 */

/**
 * @typedef {object} RatekeeperFetchOptions
 * @property {() => Promise<RatekeeperSession>} getSession Asks the app's own backend for a new
 *   session (the backend holds the API key; the browser never does).
 * @property {typeof globalThis.fetch} [fetch] The underlying fetch (default `globalThis.fetch`).
 * @property {number} [refreshAheadMs] Fetch a new session this long before `expires_at`
 *   (default 30 000). A session that lives shorter than this is renewed halfway through its life.
 * @property {number} [maxRetryAfterMs] The longest wait after a 429 (default 60 000).
 * @property {() => number} [now] The clock, in milliseconds since the epoch (default `Date.now`).
 * @property {(ms: number) => Promise<void>} [sleep] Waits `ms` milliseconds (default `setTimeout`).
 */

/**
 * Return a `fetch`-compatible function that sends each request with the current session's
 * client secret, gets a session lazily and again ahead of its expiry, and recovers once from:
 *
 * - a 401 whose `error.code` is `session_expired`, `session_cancelled` or
 *   `invalid_client_secret`: a new session, then the same request again (not when the body is
 *   a `ReadableStream`, which cannot be sent twice: that 401 is returned as it is);
 * - a 429: waits `retry-after-ms` (or `retry-after`) capped at `maxRetryAfterMs`, then the same
 *   request again; a second 429 is returned as it is.
 *
 * Each recovery happens at most once per call. Every other answer, and every successful one,
 * is returned untouched: a response body (an SSE stream included) is never read. Concurrent
 * calls share one in-flight `getSession()`. A `getSession()` failure rejects the call.
 *
 * @param {RatekeeperFetchOptions} options
 * @returns {(input: RequestInfo | URL, init?: RequestInit) => Promise<Response>}
 */
export function createRatekeeperFetch({
  getSession,
  fetch = globalThis.fetch,
  refreshAheadMs = 30_000,
  maxRetryAfterMs = 60_000,
  now = () => Date.now(),
  sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}) {
  if (typeof getSession !== "function") throw new TypeError("getSession must be a function");
  if (typeof fetch !== "function") throw new TypeError("no fetch: pass options.fetch");

  /** @type {{ secret: string, refreshAtMs: number } | null} */
  let current = null;
  /** @type {Promise<string> | null} */
  let refreshing = null;

  /** Start one `getSession()`, or join the one in flight. */
  function refresh() {
    if (refreshing === null) {
      refreshing = (async () => {
        const session = await getSession();
        if (
          !session ||
          typeof session.client_secret !== "string" ||
          typeof session.expires_at !== "number"
        ) {
          throw new TypeError("getSession() must return { client_secret, expires_at }");
        }
        const fetchedAtMs = now();
        const expiresAtMs = session.expires_at * 1000;
        let refreshAtMs = expiresAtMs - refreshAheadMs;
        // A session shorter-lived than refreshAheadMs would be "due" at once, and renewed on
        // every call: renew it halfway through its life instead.
        if (refreshAtMs <= fetchedAtMs) refreshAtMs = fetchedAtMs + (expiresAtMs - fetchedAtMs) / 2;
        current = { secret: session.client_secret, refreshAtMs };
        return current.secret;
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  /** The secret to send now: the current one unless missing or due for renewal. */
  function secretNow() {
    if (refreshing !== null) return refreshing;
    if (current === null || now() >= current.refreshAtMs) return refresh();
    return Promise.resolve(current.secret);
  }

  /** After a 401 for `rejected`: a new secret, shared with callers that were told the same. */
  function secretAfter(rejected) {
    if (refreshing !== null) return refreshing;
    if (current !== null && current.secret !== rejected) return secretNow();
    return refresh();
  }

  return async function ratekeeperFetch(input, init) {
    const request = prepare(input, init ?? {});
    let secret = await secretNow();
    let response = await fetch(...request.build(secret));
    let refreshed = false;
    let waited = false;
    for (;;) {
      if (response.status === 401 && !refreshed && request.replayable) {
        if (!SESSION_ENDED.has(await errorCode(response))) return response;
        refreshed = true;
        discard(response);
        secret = await secretAfter(secret);
      } else if (response.status === 429 && !waited && request.replayable) {
        const waitMs = retryAfterMs(response.headers, now());
        if (waitMs === null) return response;
        waited = true;
        discard(response);
        await sleep(Math.min(waitMs, maxRetryAfterMs));
        secret = await secretNow();
      } else {
        return response;
      }
      response = await fetch(...request.build(secret));
    }
  };
}

/**
 * Capture a call's arguments so that the request can be sent again with another secret.
 *
 * @param {RequestInfo | URL} input
 * @param {RequestInit} init
 * @returns {{ replayable: boolean, build: (secret: string) => [RequestInfo | URL, RequestInit] }}
 */
function prepare(input, init) {
  if (typeof Request !== "undefined" && input instanceof Request) {
    // A Request's body is a stream already; a clone kept aside is the copy for a second send.
    let spare = input.bodyUsed ? null : input.clone();
    let first = true;
    return {
      replayable: spare !== null,
      build(secret) {
        let source = input;
        if (!first) {
          source = spare;
          spare = source.clone();
        }
        first = false;
        const headers = new Headers(source.headers);
        new Headers(init.headers).forEach((value, name) => headers.set(name, value));
        headers.set("Authorization", `Bearer ${secret}`);
        return [source, { ...init, headers }];
      },
    };
  }
  return {
    replayable: isReplayable(init.body),
    build(secret) {
      const headers = new Headers(init.headers);
      headers.set("Authorization", `Bearer ${secret}`);
      return [input, { ...init, headers }];
    },
  };
}

/** Whether `fetch` can send this body a second time (a stream is gone once sent). */
function isReplayable(body) {
  return (
    body === undefined ||
    body === null ||
    typeof body === "string" ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    (typeof Blob !== "undefined" && body instanceof Blob) ||
    (typeof FormData !== "undefined" && body instanceof FormData) ||
    (typeof URLSearchParams !== "undefined" && body instanceof URLSearchParams)
  );
}

/** `error.code` of an OpenAI-shaped error body, read from a copy (the response stays unread). */
async function errorCode(response) {
  try {
    const body = await response.clone().json();
    return body && body.error && typeof body.error.code === "string" ? body.error.code : null;
  } catch {
    return null;
  }
}

/** Milliseconds to wait from `retry-after-ms`, else `retry-after` (seconds or a date); or null. */
function retryAfterMs(headers, nowMs) {
  const ms = Number.parseFloat(headers.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers.get("retry-after");
  if (value === null) return null;
  const seconds = Number(value.trim());
  if (value.trim() !== "" && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}

/** Release a response that will not be returned (frees its connection). */
function discard(response) {
  if (response.body !== null && !response.bodyUsed) response.body.cancel().catch(() => {});
}
