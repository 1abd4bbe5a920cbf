// The orchestrator's public JSON API, as the dashboard calls it: tokens, one transparent
// token refresh on 401, errors carrying the API's own message, and what the session may
// do (`/auth/me`'s permissions).

// Tokens live in sessionStorage: they survive a reload of the tab but are not persisted
// beyond it (closing the tab logs out), and other tabs or sites cannot read them.
const ACCESS = "scriptmesh.access_token";
const REFRESH = "scriptmesh.refresh_token";
const EMAIL = "scriptmesh.email";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get accessToken() {
    return sessionStorage.getItem(ACCESS);
  },
  get email() {
    return sessionStorage.getItem(EMAIL);
  },
  isLoggedIn() {
    return Boolean(sessionStorage.getItem(ACCESS));
  },
  store(tokens, email) {
    sessionStorage.setItem(ACCESS, tokens.access_token);
    sessionStorage.setItem(REFRESH, tokens.refresh_token);
    if (email) sessionStorage.setItem(EMAIL, email);
  },
  clear() {
    sessionStorage.removeItem(ACCESS);
    sessionStorage.removeItem(REFRESH);
    sessionStorage.removeItem(EMAIL);
  },
};

/** Called when the session has ended for good (refresh refused): the app shows the login. */
let onSessionEnded = () => {};
export function whenSessionEnds(callback) {
  onSessionEnded = callback;
}

// Refresh tokens rotate and a reused one revokes the whole session, so concurrent 401s
// must share a single refresh rather than each sending the same token.
let refreshing = null;

async function refreshTokens() {
  const refreshToken = sessionStorage.getItem(REFRESH);
  if (!refreshToken) return false;
  if (!refreshing) {
    refreshing = send("POST", "/auth/refresh", { refresh_token: refreshToken }, null)
      .then((tokens) => {
        session.store(tokens);
        return true;
      })
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "network_error", "The orchestrator could not be reached. Check your connection.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(
      response.status,
      (error && error.code) || "http_error",
      (error && error.message) || `The orchestrator answered ${response.status}.`,
    );
  }
  return data;
}

/** A call with the session's token; on a 401 the tokens are refreshed once and the call retried. */
export async function api(method, path, body) {
  try {
    return await send(method, path, body, session.accessToken);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || !session.isLoggedIn()) throw error;
    if (await refreshTokens()) return send(method, path, body, session.accessToken);
    session.clear();
    onSessionEnded();
    throw error;
  }
}

/**
 * Follows a Server-Sent Events stream of the API with the session's token (EventSource
 * cannot send one): calls `onEvent(name, data)` for each event, with its JSON data parsed,
 * and resolves when the stream ends or `signal` aborts it. A dropped connection is resumed
 * where it stopped (`Last-Event-ID`), a 401 after one token refresh.
 */
export async function followEvents(path, onEvent, signal) {
  let lastId = null;
  let refreshed = false;
  while (!signal.aborted) {
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${session.accessToken}` };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(path, { headers, credentials: "omit", cache: "no-store", signal });
    } catch {
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    if (response.status === 401 && !refreshed && (await refreshTokens())) {
      refreshed = true;
      continue;
    }
    if (!response.ok) {
      const text = await response.text();
      let error = null;
      try {
        error = JSON.parse(text).error;
      } catch {
        error = null;
      }
      throw new ApiError(response.status, (error && error.code) || "http_error", (error && error.message) || `The orchestrator answered ${response.status}.`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = { name: "message", id: null, data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (event.data.length) {
              if (event.id !== null) lastId = event.id;
              let data = null;
              try {
                data = JSON.parse(event.data.join("\n"));
              } catch {
                data = null;
              }
              if (onEvent(event.name, data) === false) return;
            }
            event = { name: "message", id: null, data: [] };
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.name = text;
            else if (field === "id") event.id = text;
            else if (field === "data") event.data.push(text);
          }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** A call without a session (sign up, verify, log in). */
export function publicApi(method, path, body) {
  return send(method, path, body, null);
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function logOut() {
  const refreshToken = sessionStorage.getItem(REFRESH);
  session.clear();
  forgetMe();
  if (refreshToken) {
    try {
      await send("POST", "/auth/logout", { refresh_token: refreshToken }, null);
    } catch {
      // Logged out locally either way; the refresh token expires on its own.
    }
  }
}

// What the logged-in person may do here: `/auth/me`, fetched once per login, whose
// permissions hide the pages and buttons their role may not use. The server decides
// regardless; this only spares people buttons that would answer 403.
let me = null;

/** Fetches `/auth/me` for the current session (again after a new login). */
export async function loadMe() {
  me = await api("GET", "/auth/me");
  return me;
}

/** The last `/auth/me` answer, or null before it arrived (or after logging out). */
export function currentMe() {
  return me;
}

export function forgetMe() {
  me = null;
}

/**
 * Whether the session has `permission` (e.g. "jobs.run"). Before `/auth/me` arrived, or
 * from a server that does not list permissions, everything counts as allowed: the server
 * still refuses what the role may not do.
 */
export function can(permission) {
  if (!permission || !me || !Array.isArray(me.permissions)) return true;
  return me.permissions.includes(permission);
}

export const FINISHED_JOB_STATUSES = ["success", "failed", "timeout", "cancelled", "lost"];
export const JOB_STATUSES = ["pending", "dispatched", "running", ...FINISHED_JOB_STATUSES];

export function isFinished(status) {
  return FINISHED_JOB_STATUSES.includes(status);
}
