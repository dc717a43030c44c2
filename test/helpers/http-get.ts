/**
 * A program for `node -e HTTP_GET_JS URL`: one HTTP GET (10 s), the body on stdout; exit 0 on 200, 3 on
 * another status, 2 on a timeout, 1 on an error (its code on stderr). Node, not curl or wget: node is what every
 * test host has (Debian 12's static busybox wget segfaults there).
 */
export const HTTP_GET_JS = `
const http = require('node:http');
const [url] = process.argv.slice(1);
http.get(url, { timeout: 10000 }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => { process.stdout.write(b); process.exit(res.statusCode === 200 ? 0 : 3); }); })
  .on('timeout', () => { console.error('timeout'); process.exit(2); })
  .on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
`;
