// Loaded into s3rver by the tests (node --require, see s3_lib.sh): its
// filesystem store answers a PUT only once the object's bytes are in its file.
//
// s3rver 3.7.1 resolves a PUT when it has read the request body, while the
// file it pipes the body into may still be empty: a GET sent right after the
// 200 then reads 0 bytes (7 of 2000 PUT-then-GET pairs on a busy machine).
// AWS S3 reads back what a PUT it answered stored. Only that order changes
// here: the object file is still written in place, so a PUT cut short by a
// crashed client still leaves the torn object some S3-compatible stores keep,
// which the daemon must handle.
//
// S3RVER_MODULE_DIR names the s3rver package directory; a store whose shape
// is not the one this was written for stops s3rver at start, loudly.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Readable, Transform } = require('stream');
const { pipeline } = require('stream/promises');

const moduleDir = process.env.S3RVER_MODULE_DIR;
if (!moduleDir) throw new Error('s3rver_put_order.js: S3RVER_MODULE_DIR is not set');
const version = require(path.join(moduleDir, 'package.json')).version;
const FilesystemStore = require(path.join(moduleDir, 'lib/stores/filesystem'));
for (const method of ['putObject', 'putMetadata', 'getResourcePath']) {
  if (typeof FilesystemStore.prototype[method] !== 'function') {
    throw new Error(`s3rver_put_order.js: s3rver ${version} has no FilesystemStore.${method}`);
  }
}

FilesystemStore.prototype.putObject = async function putObject(object) {
  const file = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const digest = crypto.createHash('md5');
  let size = 0;
  const measure = new Transform({
    transform(chunk, encoding, done) {
      digest.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const body = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  // Settles once the file stream has written every byte (or failed).
  await pipeline(body, measure, fs.createWriteStream(file));
  const md5 = digest.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  return { size, md5 };
};
