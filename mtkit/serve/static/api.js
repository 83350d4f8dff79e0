// mtkit serve: every call to this server's /api, and the rule that each panel has one request in flight.

export class ApiError extends Error {
  constructor(message, field, status) { super(message); this.field = field; this.status = status; }
}

// True for the rejection of a request that was aborted on purpose (a newer one replaced it): not an error to show.
export function isAbort(err) { return err != null && err.name === "AbortError"; }

async function call(path, body, signal) {
  const options = body === undefined ? { signal } :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal };
  let response, data;
  try {
    response = await fetch(path, options);
    data = await response.json().catch((err) => {
      if (isAbort(err)) throw err;
      return { error: `HTTP ${response.status}` };
    });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(`the server did not answer (${err.message}); is mtkit serve still running?`, null, 0);
  }
  if (!response.ok) throw new ApiError(data.error || `HTTP ${response.status}`, data.field, response.status);
  return data;
}

export const getRuns = () => call("/api/runs");
export const getScores = () => call("/api/scores");
export const getPassages = () => call("/api/passages");
export const translate = (body, signal) => call("/api/translate", body, signal);
export function getExamples(bucket, offset, count, outputs, signal) {
  const query = new URLSearchParams({ bucket, offset: String(offset), count: String(count), outputs: String(outputs) });
  return call(`/api/examples?${query}`, undefined, signal);
}

// One request in flight per key (a model's panel, the examples box): starting a request aborts the one before,
// so an older answer can never arrive after a newer one and overwrite it.
export class Latest {
  constructor() { this.controllers = new Map(); }

  start(key) {
    this.abort(key);
    const controller = new AbortController();
    this.controllers.set(key, controller);
    return controller.signal;
  }

  abort(key) {
    const controller = this.controllers.get(key);
    if (controller) controller.abort();
    this.controllers.delete(key);
  }

  abortAll() { for (const key of [...this.controllers.keys()]) this.abort(key); }
}
