"""Redact secrets and personal data before text leaves the process (LLM, Slack, search index, logs, Sentry).

Rules run most specific first and yield the span of the secret *value* only, so keys, prose, schemes and hosts
survive ("the password is [REDACTED:password]"); an overlap goes to the earlier rule (``SLACK_TOKEN=xoxb-..`` is a
``slack_token``). Kept on purpose, as runbooks are full of them and they are not secrets: references and templates
(``$X``, ``${X}``, ``$(cmd)``, ``{{x}}``, ``<x>``, ``[x]``, ``ALL_CAPS``, ``config[:pw]``), masks (``xxx``,
``***``, ``REDACTED``), dummies (``changeme``, ``your-password``, ``super-secret-key``, ``*example*``), file paths,
values under 3 characters; hashes, UUIDs and digests unless right after a secret keyword; prose ("the password
is stored in 1Password"); emails at example domains, GCP service accounts and ``ssh user@host`` logins.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Hit = tuple[str, int, int]  # kind, start, end


@dataclass(frozen=True)
class Finding:
    """Where a secret was: offsets into the original text. The secret itself is never kept."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Redacted:
    text: str
    findings: tuple[Finding, ...]

    @property
    def found(self) -> bool:
        return bool(self.findings)

    def kinds(self) -> list[str]:
        return sorted({f.kind for f in self.findings})


# Known token formats: the prefix makes them unambiguous, so they are redacted anywhere (group 1 if present).
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(  # the whole PEM/OpenSSH/PGP block; a truncated paste up to its last base64 line
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.{0,20000}?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"|(?:(?:\s|\\n)+[A-Za-z0-9+/=]{16,})+)", re.S)),
    ("gcp_service_account_key", re.compile(r'"private_key_id"\s*:\s*"([0-9a-f]{40})"')),
    ("slack_webhook", re.compile(r"https://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/([\w/-]{16,})")),
    ("slack_token", re.compile(r"\b(?:xox[abporse]-\d+-[A-Za-z0-9-]{8,}|xapp-\d-[A-Za-z0-9-]{16,}"
                               r"|xoxe\.xox[bp]-\d-[A-Za-z0-9-]{16,})")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("gitlab_token", re.compile(r"\b(?:gl(?:pat|dt|rt|ptt|ft|soat|cbt|imt|agent)-[\w-]{20,}|GR1348941[\w-]{20,})")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("aws_secret_key", re.compile(r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?"
                                  r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")),
    ("google_api_key", re.compile(r"\bAIza[\w-]{35}(?![\w-])")),
    ("anthropic_key", re.compile(r"\bsk-ant-[\w-]{20,}")),
    ("openai_key", re.compile(r"\bsk-(?:(?:proj|svcacct|admin)-[\w-]{20,}|[A-Za-z0-9]{32,})")),
    ("stripe_key", re.compile(r"\b(?:[sr]k_(?:live|test)_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,})")),
    ("vault_token", re.compile(r"\bhv[sbr]\.[\w-]{24,}")),
    ("npm_token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("pypi_token", re.compile(r"\bpypi-AgEIcHlwaS5vcmc[\w-]{40,}")),
    ("sendgrid_key", re.compile(r"\bSG\.[\w-]{22}\.[\w-]{43}\b")),
    ("jwt", re.compile(r"\beyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]*")),
    ("sentry_dsn", re.compile(r"://([0-9a-f]{32}(?::[0-9a-f]{32})?)@[\w.-]+")),  # the DSN key in its userinfo
)

# Values that are references, templates, file names or code: runbooks show where a secret lives, not the secret.
_PLACEHOLDER = re.compile(r"""(?ix)^(?:
    \$[{(A-Za-z_].* | `.*` | <.* | \[[^\[\]]*\] | \{\{.*\}\} | \{[^{}]*\} | %[\w.]+% | %\([^)]*\)s | \#\{.*\}
  | change[-_]?me|none|null|nil|true|false|yes|no|on|off|empty|unset|hidden|masked|\d+\ bytes
  | [x*#•._-]{3,} | (.)\1{2,}                                    # masks: xxx, yyy, ***
  | (?:file:)?\.{0,2}[/~].* | .*\.(?:pem|key|crt|cert|p12|pfx|jks|der|pub|asc|gpg|json|ya?ml|txt|env|conf)
  | (?:fake|dummy|sample|placeholder)[-_].* | --[A-Za-z].*       # dummies; the next CLI flag
  | (?:ENV|os\.environ|os\.getenv|process\.env|secretKeyRef|valueFrom|vault:|ref\+|!vault).*
  | [A-Za-z_][\w.:]*(?:\(.*\)|\[.*\]) | (?-i:[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)   # get_pw(), cfg.db_pw
)$""")
_MASKED = re.compile(r"(?i)example|xxxx|\*\*\*|\.\.\.|…|redacted|your[-_]")  # ghp_xxxx.., AKIA..EXAMPLE (AWS docs)
_CAPS = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # DOCKER_PASSWORD, YOUR_TOKEN_HERE: a name, not a value


# A value made only of these words is a dummy: "your-password", "super-secret-key", "get_me_from_vault".
_DUMMY_WORDS = frozenset(re.findall(r"\S+", """
your my some the new old db user admin dummy fake sample test foo bar baz super secure secret secrets api access
client cookie app auth password passwd pass pw pwd token key value here id goes insert put replace me get
from vault changeme change it placeholder private session signing string bot webhook personal root
"""))
# Ordinary words after "password is" / "password:" mean prose about a password, not the password.
_STOPWORDS = frozenset(re.findall(r"\S+", """
a an the in on at to of for from by with without via using it its this that these those there here not no none
is are was be been being also only just then than same different another any each every all both either one two
stored kept saved located found held managed generated rotated provided required needed optional mandatory set
unset empty blank missing wrong correct incorrect invalid valid expired revoked encrypted hashed masked hidden
shown printed displayed available unavailable used case-sensitive sensitive secure insecure weak strong long short
see check ask use get read run fetch retrieve copy paste enter type provide reset change rotate create update when
what where which who how if because so but and or as usually typically probably always never now still too login
log access connect authenticate sign 1password vault gkms keychain lastpass bitwarden chef kubernetes k8s secret
secrets password passwords token tokens key keys aes rsa gpg ssh tls ssl https http base64 plaintext plain text
"""))

_REST = r"(?=(?P<rest>[^\n]{0,4096}))"  # the rest of the line as a lookahead, so a next key on it still matches
_KEYWORD = (r"(?:passw(?:or)?d|passphrase|secret|token|api[_-]?key|apikey"
            r"|(?:access|secret|private|client|app|auth|account|signing|encryption|master)[_-]?key)")
# A key ending in a secret keyword (DB_PASSWORD, apiKey, "token", --docker-password) then := : = =>.
_KV = re.compile(rf"(?<![\w.-])(?P<key>[\w.-]*?(?:{_KEYWORD}|(?<![A-Za-z])(?:pwd|pw|pass)))(?![\w-])"
                 r"""(?P<sep>["']?\]?[ \t]*(?:=>|:=|:|=)[ \t]*)""" + _REST, re.I)
# Kubernetes env entries: "- name: DB_PASSWORD" then "value: ..." on the next line.
_K8S_ENV = re.compile(rf"name:[ \t]*[\"']?(?P<key>[\w.-]*?{_KEYWORD})[\"']?[ \t]*\n"
                      r"[ \t]*value(?P<sep>:[ \t]*)" + _REST, re.I)
_FLAG = re.compile(rf"(?<!\S)(?P<key>--[\w-]*?{_KEYWORD})(?P<sep>[ \t]+)" + _REST, re.I)  # --password hunter2
_PROSE = re.compile(  # "the admin password for the staging db is ...", "set the password to ...", "API key: ..."
    r"(?i)\b(?P<key>password|passwd|passphrase|pw|pwd|secret|token|api[ _-]?key|access[ _-]?key)\b"
    r"(?:\s+(?:for|of|to)\s+(?:the\s+|an?\s+)?\S+(?:\s+(?:account|user|server|database|db|instance|host))?)?"
    r"(?P<sep>[ \t]*:[ \t]*|\s+(?:is|was|to|(?:is|was|has\s+been)\s+(?:set|changed|reset|updated)\s+to|is\s+now)"
    r"(?:\s*:)?\s+)" + _REST)
# Korean: the keyword must be followed by a particle or := ("암호화" is encryption, not a password).
_KOREAN = re.compile(r"(?P<key>비밀\s?번호|비번|암호|패스워드|토큰|(?i:api)\s?키|액세스\s?키)(?:\s?값)?"
                     r"(?P<sep>\s*(?:(?:는|은|이|가|를|을)(?![가-힣])\s*(?:[:=]\s*)?|[:=]\s*))" + _REST)
_CLI_PASSWORDS = (  # SQL literals and command lines that take a password in their own syntax
    re.compile(r"(?i)\b(?:password|identified\s+by)\s+'([^'\n]+)'"),
    re.compile(r"\bcurl\b[^\n|;]{0,300}?(?:-u|--user)\s+[\"']?[^\s:\"']*:([^\s\"']+)"),
    re.compile(r"\bredis-cli\b[^\n|;]{0,300}?\s-a\s+[\"']?([^\s\"']+)"),
    re.compile(r"\bmysql(?:dump|admin)?\b[^\n|;]{0,300}?\s-p([^\s\"'-][^\s\"']*)"),
)
_COOKIE = re.compile(r"(?i)\b(?:set-)?cookie[\"']?[ \t]*:[ \t]*[\"']?([^\n\"']+)")  # the whole header value
_AUTH = re.compile(r"(?i:\b(?:proxy-)?authorization)[\"']?\s*[:=]\s*[\"']?"
                   r"(?:(?P<scheme>(?i:bearer|basic|token|bot|digest|apikey))\s+)?(?P<v>[^\s\"',;]+)"
                   r"|\b(?P<scheme2>Bearer|Basic)\s+(?P<v2>[\w.~+/=-]{16,})")
_URL_CRED = re.compile(r"\b(?P<scheme>[a-z][a-z0-9+.-]{0,30})://[^\s:/@\"'<>]*:(?P<v>[^\s@/\"'<>]+)@[\w.\[\]-]", re.I)
_DB_SCHEMES = re.compile(r"(?i)(postgres|mysql|maria|mongo|redis|amqp|mssql|sqlserver|oracle|clickhouse|cockroach"
                         r"|jdbc|ldap|kafka|nats|memcache|couch|neo4j|elastic|influx)")
_EMAIL = re.compile(r"(?<![\w.+%${}<>-])([\w.%+-]+)@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-]|\.\w|:[\w~/])")
_EMAIL_DUMMY = re.compile(r"(?i)your[._-]?(?:name|email|user(?:name)?)|user(?:name)?|you|me|someone"
                          r"|j(?:ane|ohn)?[._]?doe")
_EXAMPLE_DOMAIN = re.compile(r"(?i)(?:^|\.)(?:example(?:\.(?:com|org|net))?|test|invalid|localhost|local|internal"
                             r"|gserviceaccount\.com)$")  # RFC 2606 names and service accounts: not personal data
_SSH_BEFORE = re.compile(r"\bssh(?:[ \t]+-\S+)*[ \t]+$")
_ENTROPY_CANDIDATE = re.compile(r"(?<![\w/+=.-])[\w+=-]{20,}(?![\w/+=.-])")
_ENTROPY_CONTEXT = re.compile(r"(?i)(passw|secret|token|api[ _-]?key|apikey|credential|비밀번호|토큰|패스워드)")
_HASH_CONTEXT = re.compile(r"(?i)(sha|md5|hash|digest|commit|checksum|fingerprint|sum\b|uuid|\bid\b|image|tag)")
# Password-shaped words (letters, digits and a symbol), e.g. "the DB password? It is currently Pa55w0rd!24".
_SHAPED = re.compile(r"(?<!\S)(?=\S{0,63}\d)(?=\S{0,63}[A-Za-z])(?=\S{0,63}[!#$%^&*?~+])\S{8,64}(?!\S)")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CLAUSE_END = re.compile(r"\s*(?:[.!?;,)]|$|(?:and|but|so|then)\b)")  # "is swordfish." vs "is stored in"
_LINE_START = re.compile(r"\s*(?:[-*]\s+|export\s+|#\s*)?[\"']?")
_NON_SPACE = re.compile(r"\S*")


def _is_placeholder(value: str) -> bool:
    words = re.split(r"[-_ .]+", value.lower())
    return bool(_PLACEHOLDER.match(value) or _MASKED.search(value) or _CAPS.fullmatch(value)
                or all(w in _DUMMY_WORDS for w in words))


def _key_kind(key: str) -> str:
    """The kind named by the key's last keyword: reset_password_token is a token, DB_PASSWORD a password."""
    last = (re.findall(r"pass|pw|비밀|비번|암호|패스|token|토큰|key|키|secret", key.lower()) or ["secret"])[-1]
    if last in ("token", "토큰"):
        return "token"
    return "generic_api_key" if last in ("key", "키") else "secret" if last == "secret" else "password"


def _trim(value: str) -> str:
    """Drop trailing punctuation that belongs to the sentence, keeping balanced brackets."""
    pairs = {")": "(", "]": "[", "}": "{", ">": "<"}
    while value and value[-1] in ".,;:\"'`)]}>":
        if value[-1] in pairs and value.count(pairs[value[-1]]) >= value.count(value[-1]):
            break
        value = value[:-1]
    return value


def _natural(word: str) -> bool:
    """A plain word (hunter, Stored) rather than something password-shaped (hunter2, S!B*d)."""
    return word.isalpha() and (word[1:].islower() or word.isupper())


def _value(rest: str, offset: int, *, line_value: bool, prose: bool, cut: str) -> tuple[int, int] | None:
    """The secret value at the start of ``rest``; None when it is a placeholder or ordinary language."""
    if rest and rest[0] in "\"'`“":
        end = rest.find("”" if rest[0] == "“" else rest[0], 1)
        if end < 0:  # an unclosed quote or code span: look at what follows it
            return _value(rest[1:], offset + 1, line_value=line_value, prose=prose, cut=cut)
        inner = rest[1:end]
        if (prose and re.search(r"\s", inner)) or len(inner) < 3 or _is_placeholder(inner.strip()):
            return None
        return offset + 1, offset + end
    if line_value:  # a YAML/INI line: the value runs to the end of the line, minus a trailing comment
        raw = re.sub(r"\s+#.*$", "", rest).rstrip()
        words = [w.lower() for w in raw.split()] or [""]
        stop = [w in _STOPWORDS for w in words]
        # "see 1Password" is prose, "hunter2 and then" a value then prose, "correct horse battery" a passphrase
        prose_line = stop[0] and (any(stop[1:]) or raw.endswith((".", ")")))
        if len(words) > 1 and (prose_line or (not stop[0] and any(stop[1:])) or words[0][:1] in "$<[{`"):
            return _value(rest, offset, line_value=False, prose=True, cut=cut)
    else:
        raw = _trim(re.split(rf"[\s\"'`{re.escape(cut)}]", rest, maxsplit=1)[0])
        if prose and _natural(raw) and (raw.lower() in _STOPWORDS or not _CLAUSE_END.match(rest[len(raw):])):
            return None
    if len(raw) < 3 or raw.lower() in _STOPWORDS or _is_placeholder(raw):
        return None
    return offset, offset + len(raw)


def _formats(text: str) -> Iterator[Hit]:
    for kind, pattern in _FORMATS:
        for m in pattern.finditer(text):
            g = 1 if pattern.groups else 0
            if not _MASKED.search(m.group(g)):
                yield kind, m.start(g), m.end(g)


def _url_credentials(text: str) -> Iterator[Hit]:
    for m in _URL_CRED.finditer(text):
        if not _is_placeholder(m["v"]):
            yield ("connection_string" if _DB_SCHEMES.search(m["scheme"]) else "url_credentials"), *m.span("v")


def _authorization(text: str) -> Iterator[Hit]:
    for m in _AUTH.finditer(text):
        group = "v" if m["v"] else "v2"
        scheme, value = (m["scheme"] or m["scheme2"] or "").lower(), m[group]
        shaped = bool(re.search(r"\d|[+/=]|.[A-Z]", value))  # a bare "Bearer xyz" must look like a token
        if len(value) >= 8 and not _is_placeholder(value) and (group == "v" or shaped):
            yield ("basic_auth" if scheme == "basic" else "bearer_token"), *m.span(group)


def _cli_and_cookies(text: str) -> Iterator[Hit]:
    for kind, pattern in (*(("password", p) for p in _CLI_PASSWORDS), ("cookie", _COOKIE)):
        for m in pattern.finditer(text):
            if len(m[1].strip()) >= 3 and not _is_placeholder(m[1].strip()) and (kind != "cookie" or "=" in m[1]):
                yield kind, m.start(1), m.start(1) + len(m[1].rstrip())


def _keyed(pattern: re.Pattern[str], *, prose: bool) -> Callable[[str], Iterator[Hit]]:
    def rule(text: str) -> Iterator[Hit]:
        last_end = 0
        for m in pattern.finditer(text):
            if m.start() < last_end:  # inside a value already redacted ("password=password=...")
                continue
            sep, line_start = m["sep"], text.rfind("\n", max(0, m.start() - 200), m.start()) + 1
            at_line_start = (line_start or m.start() <= 200) and _LINE_START.fullmatch(text, line_start, m.start())
            line_value = not prose and bool(at_line_start) and (":" in sep or " =" in sep)
            cut = "&;" if sep.strip("\"']") == "=" else ","  # key=value (shell, URL query) vs key = value
            span = _value(m["rest"], m.start("rest"), line_value=line_value, prose=prose or ":" in sep, cut=cut)
            if span and span[1] == m.end("rest") and len(m["rest"]) == 4096:  # a value longer than the window
                span = span[0], _NON_SPACE.match(text, span[1]).end()  # type: ignore[union-attr]
            if span:
                last_end = span[1]
                yield _key_kind(m["key"]), *span
    return rule


def _korean(text: str) -> Iterator[Hit]:
    for m in _KOREAN.finditer(text):
        rest = m["rest"]
        if not rest or rest[0] not in "\"'`“":  # Korean prose: the value is the ASCII run before the next particle
            rest = re.match(r"[!-~]*", rest)[0]  # type: ignore[index]
        span = _value(rest, m.start("rest"), line_value=False, prose=True, cut="")
        if span:
            yield _key_kind(m["key"]), *span


def _entropy(text: str) -> Iterator[Hit]:
    """Random-looking strings, only right after a secret keyword on the same line (hashes in docs stay)."""
    for m in _SHAPED.finditer(text):
        value, before = _trim(m[0]), text[max(0, m.start() - 60): m.start()].rsplit("\n", 1)[-1]
        keyword = _ENTROPY_CONTEXT.search(before)
        if keyword and not re.search(r"[/=@<>{}()\[\]`\\]|^[^A-Za-z0-9]", value) and not _is_placeholder(value):
            yield _key_kind(keyword[0]), m.start(), m.start() + len(value)
    for m in _ENTROPY_CANDIDATE.finditer(text):
        value, before = m[0], text[max(0, m.start() - 40): m.start()].rsplit("\n", 1)[-1]
        if not _ENTROPY_CONTEXT.search(before) or _HASH_CONTEXT.search(before) or _UUID.fullmatch(value):
            continue
        bits = -sum(c / len(value) * math.log2(c / len(value)) for c in Counter(value).values())
        words = [w for w in re.split(r"[-_.]", value) if w.isalpha() and len(w) > 3]  # k8s-style names
        if bits >= 3.5 and re.search(r"\d", value) and re.search(r"[A-Za-z]", value) and len(words) < 2 \
                and not _is_placeholder(value):
            yield "generic_api_key", m.start(), m.end()


def _emails(text: str) -> Iterator[Hit]:
    for m in _EMAIL.finditer(text):
        if _EMAIL_DUMMY.fullmatch(m[1]) or _EXAMPLE_DOMAIN.search(m[0].rsplit("@", 1)[1]):
            continue
        if not _SSH_BEFORE.search(text, max(0, m.start() - 80), m.start()):  # ssh user@host is a login
            yield "email", m.start(), m.end()


_RULES: tuple[Callable[[str], Iterator[Hit]], ...] = (
    _formats, _url_credentials, _authorization, _cli_and_cookies,
    _keyed(_KV, prose=False), _keyed(_K8S_ENV, prose=False), _keyed(_FLAG, prose=False),
    _keyed(_PROSE, prose=True), _korean, _entropy, _emails,
)
SECRET_KINDS: tuple[str, ...] = (
    *(kind for kind, _ in _FORMATS), "connection_string", "url_credentials", "bearer_token", "basic_auth",
    "cookie", "password", "token", "secret", "generic_api_key", "email",
)


def redact(text: str) -> Redacted:
    """Replace every secret value in ``text`` by ``[REDACTED:<kind>]``."""
    spans: list[tuple[int, int, str]] = []  # accepted, sorted, never overlapping: bisect finds the neighbours
    for rule in _RULES:
        for kind, start, end in rule(text):
            i = bisect.bisect(spans, (start, end, kind))
            if end > start and (i == 0 or spans[i - 1][1] <= start) and (i == len(spans) or spans[i][0] >= end):
                spans.insert(i, (start, end, kind))
    parts, pos = [], 0
    for start, end, kind in spans:
        parts += [text[pos:start], f"[REDACTED:{kind}]"]
        pos = end
    parts.append(text[pos:])
    return Redacted("".join(parts), tuple(Finding(k, s, e) for s, e, k in spans))


def redact_text(text: str) -> str:
    return redact(text).text


# Mapping keys whose whole value is secret (Sentry request headers and cookies, log extras, config dumps).
_SECRET_KEY = re.compile(r"(?i)(passw|passphrase|(?<![a-z])pwd(?![a-z])|secret|token(?!i[sz])|api[-_]?key|apikey"
                         r"|authoriz|cookie|credential|private[-_]?key|access[-_]?key|session[-_]?id|signature"
                         r"|(?<![a-z])dsn)")


def _scrub(value: object, key: object, depth: int) -> object:
    if isinstance(key, str) and _SECRET_KEY.search(key) and value is not None and not isinstance(value, bool) and (
            not isinstance(value, int | float) or _key_kind(key) == "password"):  # keep counts: input_tokens=12
        return f"[REDACTED:{_key_kind(key)}]"
    if isinstance(value, str):
        return redact(value).text
    if isinstance(value, dict | list | tuple) and depth > 32:  # a cycle or absurd nesting: drop, never leak
        return "[REDACTED:too_deep]"
    if isinstance(value, dict):
        return {k: _scrub(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str):  # a (header, value) pair
            items = [_scrub(value[0], None, depth + 1), _scrub(value[1], value[0], depth + 1)]
        else:
            items = [_scrub(v, None, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def scrub(value: object) -> object:
    """Recursively redact strings in dicts/lists/tuples; values under secret-looking keys are replaced whole."""
    return _scrub(value, None, 0)
