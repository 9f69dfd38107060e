// Preloaded with `node --require` before the Portkey gateway starts (see tests/fixtures/gateway.py).
//
// The gateway's start script calls `listen(port)`, which binds every interface; a test server
// must never be reachable from outside this machine, so a listen that names no host is pinned
// to 127.0.0.1.  With `--port=0` the kernel picks a free port, and writing the port it chose to
// $GATEWAY_PORT_FILE lets the test fixture find it without a pick-then-bind race.
"use strict";

const fs = require("node:fs");
const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

function withLoopbackHost(args) {
  const [first, second] = args;
  if (first !== null && typeof first === "object") {
    // listen({port, ...}): a caller-chosen host or a pipe path is left alone.
    if (first.host === undefined && first.path === undefined) {
      return [{ ...first, host: LOOPBACK }, ...args.slice(1)];
    }
    return args;
  }
  const isPort = typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first));
  if (isPort && typeof second !== "string") {
    // listen(port[, backlog][, callback]): the host goes in the second slot.
    return [first, LOOPBACK, ...args.slice(1)];
  }
  return args;
}

function reportPort(server) {
  const portFile = process.env.GATEWAY_PORT_FILE;
  const address = server.address();
  if (portFile && address && typeof address === "object") {
    // Written whole then renamed, so a reader never sees half a number.
    fs.writeFileSync(`${portFile}.tmp`, String(address.port));
    fs.renameSync(`${portFile}.tmp`, portFile);
  }
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  this.once("listening", () => reportPort(this));
  return originalListen.apply(this, withLoopbackHost(args));
};
