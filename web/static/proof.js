// memberguard privacy centre: check an access-log entry's inclusion proof in the
// member's own browser, so that the server is not the one vouching for itself.
//
// The page embeds the proof (GET /v1/me/access-log/{seq}/proof's document) as
// JSON in #proof-data. Checked here, with WebCrypto only:
//   1. SHA-256(0x00 || entry) is the leaf hash, and the entry is entry `seq`;
//   2. the RFC 9162 inclusion path leads from the leaf to a root;
//   3. that root and the tree size are the signed checkpoint's (a C2SP signed
//      note: origin, size, base64 root), and its Ed25519 signature by the log's
//      verifier key (name+keyid+base64(0x01 || public key)) is valid.
// The words shown come from the page (data-* attributes, from the catalogues).
"use strict";

(function () {
  const box = document.getElementById("proof");
  const data = document.getElementById("proof-data");
  const out = document.getElementById("proof-result");
  const again = document.getElementById("proof-run");
  if (!box || !data || !out) return;

  class Failure extends Error {}

  const enc = new TextEncoder();

  function fromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function fromHex(text) {
    if (!/^([0-9a-f]{2})*$/.test(text)) throw new Failure("path");
    const bytes = new Uint8Array(text.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
    return bytes;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 section 2.1.3.2: the root a leaf and its inclusion path lead to.
  async function rootFromPath(leafHash, index, size, path) {
    if (index >= size) throw new Failure("path");
    let fn = index;
    let sn = size - 1n;
    let r = leafHash;
    for (const p of path) {
      if (sn === 0n) throw new Failure("path");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Failure("path");
    return r;
  }

  // A C2SP verifier key: <name>+<hex key id>+<base64(0x01 || 32-byte key)>.
  // The name has no "+"; the base64 may.
  function parseVerifierKey(text) {
    const match = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/.exec(text);
    if (!match) throw new Failure("note");
    const raw = fromBase64(match[3]);
    if (raw.length !== 33 || raw[0] !== 1) throw new Failure("note");
    return { name: match[1], keyIdHex: match[2], keyId: fromHex(match[2]), publicKey: raw.slice(1) };
  }

  // A C2SP signed note: its text (up to and with the last line before the blank
  // line) and its signature lines "— <name> <base64(key id || signature)>".
  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) throw new Failure("note");
    const text = note.slice(0, split + 1);
    const signatures = note
      .slice(split + 2, -1)
      .split("\n")
      .map((line) => {
        const match = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
        if (!match) throw new Failure("note");
        const raw = fromBase64(match[2]);
        return { name: match[1], keyId: raw.slice(0, 4), signature: raw.slice(4) };
      });
    const lines = text.split("\n");
    if (lines.length < 4 || !/^(0|[1-9][0-9]{0,18})$/.test(lines[1])) throw new Failure("note");
    return { text, origin: lines[0], size: BigInt(lines[1]), root: fromBase64(lines[2]), signatures };
  }

  async function verify(proof) {
    const index = BigInt(proof.leaf_index);
    const size = BigInt(proof.tree_size);
    const leafHash = fromHex(proof.leaf_hash);
    if (proof.entry !== null) {
      const entry = fromBase64(proof.entry);
      if (!equal(await sha256(concat(Uint8Array.of(0), entry)), leafHash)) throw new Failure("leaf");
      const parsed = JSON.parse(new TextDecoder().decode(entry));
      if (BigInt(parsed.seq) !== index + 1n) throw new Failure("entry");
    }
    const root = await rootFromPath(leafHash, index, size, proof.hashes.map(fromHex));
    const note = parseNote(proof.checkpoint);
    const key = parseVerifierKey(proof.verifier_key);
    if (note.origin !== key.name || note.size !== size || !equal(note.root, root)) {
      throw new Failure(note.origin !== key.name ? "note" : "path");
    }
    // The key id is SHA-256(name || 0x0A || 0x01 || key)[:4], as the note format defines.
    const keyId = (await sha256(concat(enc.encode(key.name), Uint8Array.of(0x0a, 1), key.publicKey))).slice(0, 4);
    if (!equal(keyId, key.keyId)) throw new Failure("note");
    const publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    const mine = note.signatures.filter((s) => s.name === key.name && equal(s.keyId, key.keyId));
    if (mine.length === 0) throw new Failure("signature");
    for (const s of mine) {
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, s.signature, enc.encode(note.text));
      if (!ok) throw new Failure("signature");
    }
    return { seq: String(index + 1n), size: String(size), key: `${key.name}+${key.keyIdHex}` };
  }

  function say(template, values) {
    out.textContent = template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? values[name] : whole));
  }

  async function run() {
    out.className = "result";
    out.textContent = box.dataset.checking;
    if (!window.crypto || !crypto.subtle) {
      say(box.dataset.unsupported, {});
      return;
    }
    let proof;
    try {
      proof = JSON.parse(data.textContent);
    } catch (e) {
      out.className = "result failed";
      say(box.dataset.failed, { reason: box.dataset.reasonNote });
      return;
    }
    try {
      const shown = await verify(proof);
      out.className = "result verified";
      say(proof.shared ? box.dataset.shared : box.dataset.verified, shown);
    } catch (e) {
      if (e instanceof Failure) {
        const reason = box.dataset["reason" + e.message.charAt(0).toUpperCase() + e.message.slice(1)];
        out.className = "result failed";
        say(box.dataset.failed, { reason: reason || box.dataset.reasonNote });
      } else if (e && e.name === "NotSupportedError") {
        say(box.dataset.unsupported, {});
      } else {
        out.className = "result failed";
        say(box.dataset.failed, { reason: box.dataset.reasonNote });
      }
    }
  }

  if (again) {
    again.hidden = false;
    again.addEventListener("click", run);
  }
  run();
})();
