// The orchestrator's public JSON API, as the dashboard calls it: tokens, one transparent
// token refresh on 401, and errors carrying the API's own message.

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
  if (refreshToken) {
    try {
      await send("POST", "/auth/logout", { refresh_token: refreshToken }, null);
    } catch {
      // Logged out locally either way; the refresh token expires on its own.
    }
  }
}

export const FINISHED_JOB_STATUSES = ["success", "failed", "timeout", "cancelled", "lost"];
export const JOB_STATUSES = ["pending", "dispatched", "running", ...FINISHED_JOB_STATUSES];

export function isFinished(status) {
  return FINISHED_JOB_STATUSES.includes(status);
}
