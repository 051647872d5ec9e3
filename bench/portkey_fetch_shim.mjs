// Loaded with `node --import` before the Portkey gateway, only when its streams fail without it.
// Portkey 1.15.2 on Node wraps the upstream fetch Response in @hono/node-server's lightweight Response,
// which keeps the fetch Response's immutable Headers; appending its x-portkey-* headers then throws
// "immutable" and every streamed answer becomes an HTTP 500. Re-wrapping fetch results in a native
// Response with a fresh (mutable) Headers avoids that and changes nothing else.
const nativeFetch = globalThis.fetch;
const NativeResponse = globalThis.Response;

globalThis.fetch = async (...args) => {
  const response = await nativeFetch(...args);
  return new NativeResponse(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
