#!/usr/bin/env node
// A scopevault client using only Node's standard library (docs/protocol.md).
//
//   node client.js [--socket PATH] health | tasks | fetch TASK [CREDENTIAL] | redeem TICKET
//
// Prints the response as JSON. Exit status: 0 ok, 5 refused by the daemon, 2 usage or I/O.
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const MAX_RESPONSE = 16 * 1024 * 1024;

function defaultSocket() {
  if (process.env.SCOPEVAULT_SOCKET) return process.env.SCOPEVAULT_SOCKET;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && os.userInfo().uid !== 0) return path.join(runtime, 'scopevault', 'scopevault.sock');
  return '/run/scopevault/scopevault.sock';
}

class ScopevaultError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

// Refuse a socket whose path or owner is not one to trust with a secret (docs/protocol.md,
// "Who the client talks to"): no symbolic link on the way to the socket's directory, and the
// socket owned by root, by this user, or by the owner of its directory when that directory and
// its parent are writable by their owners only and the parent belongs to root or this user.
// Node has no SO_PEERCRED: the socket file's owner (the uid that bound it) stands in for the
// peer's uid, which holds because nobody else can replace a socket in such a directory.
function checkSocket(socketPath) {
  const dir = path.dirname(path.resolve(socketPath));
  let walked = '/';
  for (const part of dir.split('/').filter(Boolean)) {
    walked = path.join(walked, part);
    if (fs.lstatSync(walked).isSymbolicLink()) {
      throw new Error(`refusing to talk to ${socketPath}: ${walked} is a symbolic link; nothing was sent`);
    }
  }
  const sock = fs.lstatSync(socketPath);
  if (!sock.isSocket()) throw new Error(`refusing to talk to ${socketPath}: not a socket; nothing was sent`);
  const me = process.geteuid();
  if (sock.uid === 0 || sock.uid === me) return;
  const d = fs.lstatSync(dir);
  const parent = fs.lstatSync(path.dirname(dir));
  const ownersOnly = !(d.mode & 0o022) && !(parent.mode & 0o022);
  if (sock.uid === d.uid && ownersOnly && (parent.uid === 0 || parent.uid === me)) return;
  throw new Error(`refusing to talk to ${socketPath}: it is owned by uid ${sock.uid}, neither root, you, nor the owner of a private socket directory; nothing was sent`);
}

// One connection; requests are answered in order, one JSON line each.
class ScopevaultClient {
  constructor(socketPath) {
    this.socketPath = socketPath || defaultSocket();
    this.buf = Buffer.alloc(0);
    this.waiting = [];
  }

  connect() {
    return new Promise((resolve, reject) => {
      checkSocket(this.socketPath);
      this.sock = net.createConnection(this.socketPath, resolve);
      this.sock.once('error', reject);
      this.sock.on('data', (chunk) => {
        this.buf = Buffer.concat([this.buf, chunk]);
        if (this.buf.length > MAX_RESPONSE) this.sock.destroy(new Error('response too large'));
        let nl;
        while ((nl = this.buf.indexOf(10)) >= 0 && this.waiting.length) {
          const line = this.buf.subarray(0, nl).toString('utf8');
          this.buf = this.buf.subarray(nl + 1);
          this.waiting.shift().resolve(line);
        }
      });
      this.sock.on('close', () => {
        for (const w of this.waiting.splice(0)) w.reject(new Error('the daemon closed the connection'));
      });
    });
  }

  async call(op, fields = {}) {
    const req = { v: 1, op };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) req[k] = v;
    const line = await new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(JSON.stringify(req) + '\n');
    });
    const res = JSON.parse(line);
    if (!res.ok) throw new ScopevaultError(res.error.code, res.error.message);
    return res;
  }

  health() { return this.call('health'); }
  async tasks() { return (await this.call('tasks')).tasks; }
  fetch(task, credential) { return this.call('fetch', { task, credential }); }
  redeem(ticket, credential) { return this.call('fetch', { ticket, credential }); }
  close() { this.sock.end(); }
}

async function main(argv) {
  let socketPath;
  if (argv[0] === '--socket') { socketPath = argv[1]; argv = argv.slice(2); }
  const [cmd, a, b] = argv;
  const client = new ScopevaultClient(socketPath);
  try {
    await client.connect();
    let out;
    if (cmd === 'health') out = await client.health();
    else if (cmd === 'tasks') out = await client.tasks();
    else if (cmd === 'fetch' && a) out = await client.fetch(a, b);
    else if (cmd === 'redeem' && a) out = await client.redeem(a, b);
    else { console.error('usage: client.js [--socket PATH] health | tasks | fetch TASK [CREDENTIAL] | redeem TICKET'); return 2; }
    console.log(JSON.stringify(out, null, 2));
    return 0;
  } catch (e) {
    console.error(e instanceof ScopevaultError ? `scopevault refused: ${e.message}` : `cannot talk to the scopevault daemon: ${e.message}`);
    return e instanceof ScopevaultError ? 5 : 2;
  } finally {
    if (client.sock) client.close();
  }
}

module.exports = { ScopevaultClient, ScopevaultError };
if (require.main === module) main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
