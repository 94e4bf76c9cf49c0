#!/usr/bin/env node
// A scopevault client using only Node's standard library (docs/protocol.md).
//
//   node client.js [--socket PATH] [--timeout SECONDS] health | tasks | fetch TASK [CREDENTIAL]
//   printf '%s\n' "$TICKET" | node client.js [--socket PATH] [--timeout SECONDS] redeem
//
// `redeem` reads the ticket from stdin (one trailing newline is ignored), never from the
// command line: any user can read a process's arguments (/proc/PID/cmdline, `ps`) and redeem
// the ticket first. A ticket given as an argument is refused, and nothing is sent. (`printf` is
// built into sh and bash, so the ticket is in no process's arguments on the way either.)
//
// Prints the response as JSON. Exit status: 0 ok; 5 the daemon refused (`busy` included: retry
// later), sent something that is not a valid response, or did not answer within the timeout
// (1 to 3600 s, default 60, for the connection, the request and its whole answer together);
// 2 usage, or no connection (no daemon there, or one this client refuses to talk to).
// Whatever it prints from the daemon has its control, bidirectional and invisible characters
// escaped.
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const MAX_RESPONSE = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT = 60;
const MAX_TIMEOUT = 3600;
// Longest ticket read from stdin (a ticket is `svt1_` and 43 characters).
const MAX_TICKET = 4096;
// Deepest nesting of arrays and objects in an answer, as the binary's JSON parser (serde_json) allows.
const MAX_DEPTH = 127;
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

// The daemon's answer is not one valid version-1 response line.
class InvalidResponse extends Error {
  constructor(why) {
    super(`the daemon's answer is not a valid response (${why}); is it a scopevault daemon of protocol version 1?`);
  }
}

// The daemon did not take the connection, or did not answer, within the timeout.
class NoAnswer extends Error {}

// Shown escaped: every control (Cc), format (Cf: bidirectional, zero-width) and separator
// character but the space, and the blank or default-ignorable ones of other categories, as
// the scopevault binary escapes them (README, "Exit codes").
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0]/gu;

// `text` as the binary shows a value read from another program: those characters written as
// Rust writes them (`\n`, `\u{1b}`, `\u{202e}`), so a daemon's message cannot drive the
// terminal, forge a line or reorder one.
function escape(text) {
  const named = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  return String(text).replace(UNSAFE, (c) => named[c] || `\\u{${c.codePointAt(0).toString(16)}}`);
}

// `value` as JSON with those characters escaped as JSON escapes them (`\u202e`): it parses to
// the same value, and nothing the daemon sent reaches the terminal raw (JSON.stringify escapes
// only the C0 controls).
function jsonForTerminal(value) {
  const unit = (u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`;
  // A raw line break is the indentation's: inside a string JSON.stringify writes `\n`.
  return JSON.stringify(value, null, 2).replace(UNSAFE, (c) => (c === '\n' ? c : c.split('').map(unit).join('')));
}

// Whether the JSON `text` nests arrays and objects deeper than MAX_DEPTH: counted before it is
// parsed, so a line of 200,000 `[` is neither parsed nor later overflows the stack.
function tooDeep(text) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // a backslash: the next character is escaped
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

// A lone surrogate (`\ud800` in JSON) is no character: the binary's parser refuses it.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

// InvalidResponse unless the parsed `value` holds no string (key or value) with a lone
// surrogate and no number out of range (`1e999`, which JSON.parse reads as Infinity).
function checkValues(value) {
  const stack = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) throw new InvalidResponse('a string with a lone surrogate, which is no character');
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new InvalidResponse('a number out of range');
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) stack.push(k, x);
    }
  }
}

// The response in `line` (a Buffer), or InvalidResponse: one JSON object, UTF-8, with `"v": 1`,
// a boolean `ok`, and for a refusal an `error` object whose `code` and `message` are strings;
// nested at most MAX_DEPTH deep, without lone surrogates or numbers out of range, as the
// binary's parser. A refusal is thrown as ScopevaultError.
function parseResponse(line) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(line);
  } catch (e) {
    throw new InvalidResponse('not UTF-8');
  }
  if (tooDeep(text)) throw new InvalidResponse(`arrays and objects nested deeper than ${MAX_DEPTH}`);
  let res;
  try {
    res = JSON.parse(text);
  } catch (e) {
    throw new InvalidResponse('not JSON');
  }
  checkValues(res);
  if (typeof res !== 'object' || res === null || Array.isArray(res)) throw new InvalidResponse('not a JSON object');
  if (res.v !== 1) throw new InvalidResponse('its `v` is not 1');
  if (typeof res.ok !== 'boolean') throw new InvalidResponse('its `ok` is not true or false');
  if (!res.ok) {
    const err = res.error;
    if (typeof err !== 'object' || err === null || typeof err.code !== 'string' || typeof err.message !== 'string') {
      throw new InvalidResponse('a refusal without an error code and message');
    }
    throw new ScopevaultError(err.code, err.message);
  }
  return res;
}

// InvalidResponse unless the `fetch` answer is for `task` (when known) and its credentials are
// a list, each named `credential` when one was asked for: an answer to another request
// (another task's, a fake daemon's) is never used.
function checkFetch(res, task, credential) {
  if (task !== undefined && res.task !== task) throw new InvalidResponse(`an answer for another task than ${task}, the one asked for`);
  if (!Array.isArray(res.credentials)) throw new InvalidResponse('`credentials` is not a list');
  if (credential !== undefined && credential !== null
      && res.credentials.some((c) => typeof c !== 'object' || c === null || c.name !== credential)) {
    throw new InvalidResponse(`an answer holding another credential than ${credential}, the one asked for`);
  }
}

// Refuse a socket that someone this client does not trust put at its path, or could put there
// between this check and the connection (docs/protocol.md, "What client.js checks"). Node has
// no SO_PEERCRED: instead of the answering process's uid, it judges who could have decided
// what the path leads to. From `/` down to the socket, each directory's entry on the way can
// be replaced by the directory's owner and root; by anyone when the directory is writable by
// group or others (refused), except that a sticky directory (/tmp) leaves an entry to its own
// owner. Trusted are root, this user, and the owner of the socket's directory when that
// directory is writable by its owner only and nobody else could change the path to it (the
// service user owning /run/scopevault). The socket is talked to when only trusted uids could
// have changed anything on the way, and the socket file belongs to one of them or every
// directory on the way is root's alone: systemd's socket activation makes /run/scopevault
// root:root 0755 and gives the socket to the service user (SocketUser=) before the service
// has ever run. Returns the path that was checked, the one to connect to: `..` is refused,
// because path.resolve drops `dir/..` as text while the kernel follows a link at `dir`
// before taking `..`, so the two would lead to different sockets.
function checkSocket(socketPath) {
  const refuse = (why) => new Error(`refusing to talk to ${socketPath}: ${why}; nothing was sent`);
  const me = process.geteuid();
  if (socketPath.split('/').includes('..')) {
    throw refuse('a ".." in the socket path is not followed (a symbolic link before it would lead elsewhere); give the path without it');
  }
  const target = path.resolve(socketPath);
  const chain = [['/', fs.lstatSync('/')]];
  for (const part of path.dirname(target).split('/').filter(Boolean)) {
    const walked = path.join(chain[chain.length - 1][0], part);
    const st = fs.lstatSync(walked);
    if (st.isSymbolicLink()) throw refuse(`${walked} is a symbolic link`);
    if (!st.isDirectory()) throw refuse(`${walked} is not a directory`);
    chain.push([walked, st]);
  }
  const sock = fs.lstatSync(target);
  if (!sock.isSocket()) throw refuse('not a socket');
  // Who can replace chain[i]'s entry on the way to the socket.
  const replacers = (i) => {
    const [dir, st] = chain[i];
    if (!(st.mode & 0o022)) return [st.uid];
    const entry = i + 1 < chain.length ? chain[i + 1][1] : sock;
    if (st.mode & 0o1000) return [st.uid, entry.uid];
    throw refuse(`${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}), so anyone could replace what is on the way to the socket`);
  };
  const upTo = (n) => [...new Set(chain.slice(0, n).flatMap((_, i) => replacers(i)))];
  const trusted = new Set([0, me]);
  const [, dir] = chain[chain.length - 1];
  if (!(dir.mode & 0o022) && upTo(chain.length - 1).every((u) => trusted.has(u))) trusted.add(dir.uid);
  const all = upTo(chain.length);
  const other = all.find((u) => !trusted.has(u));
  if (other !== undefined) {
    throw refuse(`uid ${other} could have put it there, neither root, you, nor the owner of a private socket directory`);
  }
  if (trusted.has(sock.uid) || all.every((u) => u === 0)) return target;
  throw refuse(`it is owned by uid ${sock.uid}, neither root, you, nor the owner of a private socket directory, and it is not in directories only root can write`);
}

// One connection; requests are answered in order, one JSON line each. `timeout` (seconds)
// bounds each exchange as a whole: the connection and the first request with its whole
// answer, then each later request with its answer. A daemon stopped (`kill -STOP`), hung, or
// sending its answer a byte at a time cannot hold the client longer: past the bound it closes
// the connection and the request fails with NoAnswer (so does any failure but a refusal: `call`).
class ScopevaultClient {
  constructor(socketPath, { timeout = DEFAULT_TIMEOUT } = {}) {
    this.socketPath = socketPath || defaultSocket();
    this.timeout = timeout;
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.closed = false;
    this.connected = false;
    this.firstDeadline = null;
    this.gaveUp = false;
  }

  noAnswer(stage) {
    return new NoAnswer(`the daemon at ${this.socketPath} ${stage} within ${this.timeout} s; is it stopped or hung?`);
  }

  async connect() {
    // Connect to the path that was checked, not to the one given.
    const checked = checkSocket(this.socketPath);
    this.firstDeadline = Date.now() + this.timeout * 1000;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.sock.destroy();
        reject(this.noAnswer('did not accept the connection'));
      }, this.timeout * 1000);
      this.sock = net.createConnection(checked, () => { clearTimeout(timer); this.connected = true; resolve(); });
      this.sock.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
        // A write to a connection the daemon closed without reading it fails (`EPIPE`,
        // `ECONNRESET`), and Node then discards what the daemon sent before closing, unread.
        // A daemon closes a connection unread only at its connection limit, after its `busy`
        // line, or as it stops: say so (exit 5, retry), not "cannot talk to the daemon".
        const lost = this.connected && (e.code === 'EPIPE' || e.code === 'ECONNRESET');
        this.fail(lost ? new ScopevaultError('busy', 'too many connections, or the daemon is stopping: it closed the connection before reading the request (its answer is lost with the failed write); retry later') : e);
      });
      this.sock.on('data', (chunk) => {
        this.buf = Buffer.concat([this.buf, chunk]);
        let nl;
        while ((nl = this.buf.indexOf(10)) >= 0 && this.waiting.length) {
          const line = this.buf.subarray(0, nl);
          this.buf = this.buf.subarray(nl + 1);
          this.waiting.shift().resolve(line);
        }
        if (this.buf.length > MAX_RESPONSE) this.fail(new InvalidResponse('longer than 16 MiB'));
      });
      // The daemon has closed its side: it sends nothing more.
      this.sock.on('end', () => { this.closed = true; });
      this.sock.on('close', () => {
        this.closed = true;
        this.fail(new Error('the daemon closed the connection without an answer'));
      });
    });
    // Two turns of the event loop (reading starts in the first) before the first request: a
    // daemon at its connection limit answers `busy` and closes the connection as soon as it
    // accepts it, and that answer is read here, before a write to the closed connection fails
    // and Node discards what was not read yet. (A daemon that sends `busy` later still races
    // the write; client.py reads the answer after a failed write instead, which Node cannot:
    // here the failed write itself is reported as `busy`, above.)
    await new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
  }

  // Fail every request waiting for an answer (a complete line the daemon sent before it
  // closed, such as `busy`, still answers the first), and close the connection.
  fail(err) {
    const nl = this.buf.indexOf(10);
    if (nl >= 0 && this.waiting.length) {
      const line = this.buf.subarray(0, nl);
      this.buf = this.buf.subarray(nl + 1);
      this.waiting.shift().resolve(line);
    }
    for (const w of this.waiting.splice(0)) w.reject(err);
    this.sock.destroy();
  }

  // Send one request and return its answer. A refusal (ScopevaultError) is an answer: the
  // connection stays open for the next request. Any other failure (NoAnswer, an answer that is
  // not valid, a broken connection) closes the connection before it is thrown: a request the
  // daemon has not taken yet is then never decided, and nothing it sends later is read as the
  // answer to another request.
  async call(op, fields = {}, check = undefined) {
    if (this.gaveUp) {
      throw new Error(`the connection to the daemon at ${this.socketPath} was closed after an earlier failure; make a new ScopevaultClient`);
    }
    try {
      const response = await this.exchange(op, fields);
      if (check) check(response);
      return response;
    } catch (e) {
      if (!(e instanceof ScopevaultError)) {
        this.gaveUp = true;
        this.close();
      }
      throw e;
    }
  }

  async exchange(op, fields) {
    const req = { v: 1, op };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) req[k] = v;
    const deadline = this.firstDeadline || Date.now() + this.timeout * 1000;
    this.firstDeadline = null;
    const nl = this.buf.indexOf(10);
    if (this.closed) {
      // Closed before the request: what the daemon said then (`busy`) is the answer.
      if (nl < 0) throw new Error('the daemon closed the connection without an answer');
      parseResponse(this.buf.subarray(0, nl));
      throw new InvalidResponse('an answer nobody asked for');
    }
    let timer;
    const line = await new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        reject(this.noAnswer('accepted the connection but did not answer'));
        this.fail(this.noAnswer('accepted the connection but did not answer'));
      }, Math.max(0, deadline - Date.now()));
      this.waiting.push({ resolve, reject });
      this.sock.write(JSON.stringify(req) + '\n');
    }).finally(() => clearTimeout(timer));
    // One request, one answer line: more (with no request left waiting) is not a daemon of
    // this protocol.
    if (!this.waiting.length && this.buf.length) throw new InvalidResponse('more than one answer line to one request');
    return parseResponse(line.length && line[line.length - 1] === 13 ? line.subarray(0, -1) : line);
  }

  health() { return this.call('health'); }
  // The tasks this user may fetch: InvalidResponse (the connection closed, as for any other
  // failure) for an answer whose `tasks` is not a list.
  async tasks() {
    const checkTasks = (r) => { if (!Array.isArray(r.tasks)) throw new InvalidResponse('`tasks` is not a list'); };
    return (await this.call('tasks', {}, checkTasks)).tasks;
  }
  // The credentials of `task` (only `credential`, when given): InvalidResponse for an answer
  // that is for another task or holds another credential.
  fetch(task, credential) { return this.call('fetch', { task, credential }, (r) => checkFetch(r, task, credential)); }
  // The credentials the ticket is for (only `credential`, when given). The ticket does not say
  // its task here: compare the answer's `task` with the one it was issued for.
  redeem(ticket, credential) { return this.call('fetch', { ticket, credential }, (r) => checkFetch(r, undefined, credential)); }
  // Close the connection (requests not answered yet are given up: the daemon does not decide
  // them).
  close() { if (this.sock) this.sock.destroy(); }
}

const USAGE = 'usage: client.js [--socket PATH] [--timeout SECONDS] health | tasks | fetch TASK [CREDENTIAL] | redeem (the ticket on stdin)';

// The ticket on stdin: one line, one trailing newline (or CR LF) ignored, as the binary reads a
// secret from stdin. Throws an Error that never quotes what was read otherwise. Reads at most
// MAX_TICKET + 3 bytes (a ticket, CR LF, and one byte more that says it is too long), never
// the rest of stdin, which may be endless.
function readTicket() {
  const buf = Buffer.alloc(MAX_TICKET + 3);
  let len = 0;
  for (let n; len < buf.length; len += n) {
    n = fs.readSync(0, buf, len, buf.length - len, null);
    if (n === 0) break;
  }
  let data = buf.subarray(0, len);
  if (data.length && data[data.length - 1] === 10) {
    data = data.subarray(0, data.length >= 2 && data[data.length - 2] === 13 ? -2 : -1);
  }
  if (data.length > MAX_TICKET) throw new Error(`the ticket on stdin is longer than ${MAX_TICKET} bytes; nothing was sent`);
  let ticket;
  try {
    ticket = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch (e) {
    throw new Error('the ticket on stdin is not UTF-8; nothing was sent');
  }
  if (!ticket || ticket.includes('\n')) {
    throw new Error('redeem reads one ticket from stdin, one line (printf \'%s\\n\' "$TICKET" | client.js redeem); nothing was sent');
  }
  return ticket;
}

async function main(argv) {
  let socketPath;
  let timeout = DEFAULT_TIMEOUT;
  while (argv.length >= 2 && (argv[0] === '--socket' || argv[0] === '--timeout')) {
    if (argv[0] === '--socket') socketPath = argv[1];
    else if (/^[0-9]+$/.test(argv[1]) && Number(argv[1]) >= 1 && Number(argv[1]) <= MAX_TIMEOUT) timeout = Number(argv[1]);
    else {
      console.error(`--timeout takes a whole number of seconds from 1 to ${MAX_TIMEOUT}, not ${escape(argv[1])}`);
      return 2;
    }
    argv = argv.slice(2);
  }
  const [cmd, a, b] = argv;
  const n = argv.length;
  const usage = ((cmd === 'health' || cmd === 'tasks') && n === 1) || (cmd === 'fetch' && (n === 2 || n === 3)) || (cmd === 'redeem' && n === 1);
  if (cmd === 'redeem' && n > 1) {
    // Not quoted: it is likely the ticket, already exposed to every user while we ran.
    console.error('redeem takes no argument: it reads the ticket from stdin (printf \'%s\\n\' "$TICKET" | client.js redeem), never from the command line, where any user can read it (/proc/PID/cmdline) and redeem it first; nothing was sent. If that argument was a ticket, consider it exposed: ask for a new one');
    return 2;
  }
  if (!usage) { console.error(USAGE); return 2; }
  let ticket;
  if (cmd === 'redeem') {
    try {
      ticket = readTicket();
    } catch (e) {
      console.error(`cannot read the ticket: ${escape(e.message)}`);
      return 2;
    }
  }
  const client = new ScopevaultClient(socketPath, { timeout });
  try {
    await client.connect();
    let out;
    if (cmd === 'health') out = await client.health();
    else if (cmd === 'tasks') out = await client.tasks();
    else if (cmd === 'fetch') out = await client.fetch(a, b);
    else out = await client.redeem(ticket);
    console.log(jsonForTerminal(out));
    return 0;
  } catch (e) {
    if (e instanceof ScopevaultError) { console.error(`scopevault refused: ${escape(e.message)}`); return 5; }
    if (e instanceof InvalidResponse || e instanceof NoAnswer) { console.error(`scopevault: ${escape(e.message)}`); return 5; }
    console.error(`cannot talk to the scopevault daemon: ${escape(e.message)}`);
    return 2;
  } finally {
    client.close();
  }
}

module.exports = { ScopevaultClient, ScopevaultError, InvalidResponse, NoAnswer, escape };
if (require.main === module) main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
