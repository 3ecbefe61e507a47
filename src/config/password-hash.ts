/**
 * The password hashes `basicAuth.users` accepts, recognised in one place: config validation
 * refuses anything else with its key path and line:column (so `switchyard validate` catches a
 * plain-text password), and the basicAuth filter verifies with the parameters parsed here.
 */

export type PasswordHash =
  | { kind: 'bcrypt'; cost: number }
  | { kind: 'scrypt'; ln: number; r: number; p: number; salt: string; hash: string };

/** `$2a$`, `$2b$` or `$2y$`, a two-digit cost, then 22 characters of salt and 31 of hash. */
const BCRYPT_HASH = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

/** `$scrypt$ln=15,r=8,p=1$<salt base64>$<hash base64>` (the PHC-style form passlib writes). */
const SCRYPT_HASH =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/._-]+=*)\$([A-Za-z0-9+/._-]+=*)$/;

/** How to make a hash, for the messages (docs/security.md has the details). */
const HOW_TO_HASH =
  'store a hash, never the password; make one with e.g. `htpasswd -nbBC 12 USER \'PASSWORD\'` (the part after "USER:") or see docs/security.md';

/**
 * The parsed hash, or a message saying what is wrong with `text`. Parameters the verifiers
 * reject (a bcrypt cost outside 4-31, an scrypt N that is not 2^1-2^31 or too large for r) are
 * refused here too: they would fail every login at run time instead.
 */
export function parsePasswordHash(text: string): PasswordHash | { problem: string } {
  const bcrypt = BCRYPT_HASH.exec(text);
  if (bcrypt !== null) {
    const cost = Number(bcrypt[1]);
    if (cost < 4 || cost > 31) return { problem: `bcrypt cost must be 04 to 31, got ${bcrypt[1]}` };
    return { kind: 'bcrypt', cost };
  }
  const scrypt = SCRYPT_HASH.exec(text);
  if (scrypt !== null) {
    const ln = Number(scrypt[1]);
    const r = Number(scrypt[2]);
    const p = Number(scrypt[3]);
    if (r < 1 || p < 1) return { problem: `scrypt r and p must be at least 1, got r=${r},p=${p}` };
    // RFC 7914: N = 2^ln must be larger than 1 and smaller than 2^(16 r); node also caps it at 2^31.
    if (ln < 1 || ln > 31 || ln >= 16 * r)
      return {
        problem: `scrypt ln must be 1 to 31 and below 16 times r, got ln=${ln},r=${r}`,
      };
    return { kind: 'scrypt', ln, r, p, salt: scrypt[4], hash: scrypt[5] };
  }
  return {
    problem: `not a bcrypt ($2a$, $2b$ or $2y$) or scrypt ($scrypt$ln=..,r=..,p=..$salt$hash) hash; ${HOW_TO_HASH}`,
  };
}
