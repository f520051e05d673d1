"""Redaction: every secret kind is removed with its sentence intact; runbook content is left alone.

Every secret here is generated from a seeded random.Random, so no real credential is ever committed.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable

import pytest

from bot.redaction import SECRET_KINDS, Finding, Redacted, redact, redact_text, scrub
from tests.conftest import corpus_documents

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """Random characters mixing every class the alphabet has (as a real token does), never a 'xxx' mask."""
    classes = [c for c in (r"\d", "[a-z]", "[A-Z]") if re.search(c, alphabet)]
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        if n < 8 or (all(re.search(c, value) for c in classes) and not re.search(r"(.)\1\1|example", value, re.I)):
            return value


def password(rng: random.Random) -> str:
    return rand(rng, 10) + rng.choice("!#%^*+") + rand(rng, 3)


def b64url_json(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


Sample = Callable[[random.Random], tuple[str, str]]  # -> (text, the secret inside it)

# kind -> builders of (text, secret): realistic shapes, each inside a sentence that must survive.
SAMPLES: dict[str, list[Sample]] = {
    "private_key": [
        lambda r: (lambda k: (f"the deploy key:\n{k}\nkeep it safe", k))(
            "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rand(r, 64, B64) for _ in range(6))
            + "\n-----END RSA PRIVATE KEY-----"),
        lambda r: (lambda k: (f"paste this\n{k}\ninto ~/.ssh/id_ed25519", k))(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(rand(r, 70, B64) for _ in range(4))
            + "\n-----END OPENSSH PRIVATE KEY-----"),
        lambda r: (lambda k: (f"truncated paste: {k}", k))(  # cut off before the END line
            "-----BEGIN PRIVATE KEY-----\n" + "\n".join(rand(r, 64, B64) for _ in range(3))),
    ],
    "gcp_service_account_key": [
        lambda r: (lambda h: (f'{{"type": "service_account", "private_key_id": "{h}", "project_id": "kb"}}', h))(
            rand(r, 40, HEX)),
    ],
    "slack_webhook": [
        lambda r: (lambda p: (f"alerts post to https://hooks.slack.com/services/{p} every hour", p))(
            f"T{rand(r, 10, string.ascii_uppercase + string.digits)}/B{rand(r, 10, string.ascii_uppercase + '0123')}/"
            f"{rand(r, 24)}"),
    ],
    "slack_token": [
        lambda r: (lambda t: (f"the bot token is {t}, rotate it monthly", t))(
            f"xoxb-{r.randrange(10**11, 10**12)}-{r.randrange(10**11, 10**12)}-{rand(r, 24)}"),
        lambda r: (lambda t: (f"SLACK_USER_TOKEN={t}", t))(
            f"xoxp-{r.randrange(10**11, 10**12)}-{r.randrange(10**11, 10**12)}-{r.randrange(10**11, 10**12)}-"
            f"{rand(r, 32, HEX)}"),
        lambda r: (lambda t: (f"socket mode uses {t} here", t))(
            f"xapp-1-A{rand(r, 10, string.ascii_uppercase + string.digits)}-{r.randrange(10**12, 10**13)}-"
            f"{rand(r, 64, HEX)}"),
    ],
    "github_token": [
        lambda r: (lambda t: (f"git clone with token {t} works", t))("ghp_" + rand(r, 36)),
        lambda r: (lambda t: (f"GH_TOKEN: {t}", t))("github_pat_" + rand(r, 22) + "_" + rand(r, 59)),
    ],
    "gitlab_token": [
        lambda r: (lambda t: (f'curl --header "PRIVATE-TOKEN: {t}" https://gitlab.com/api/v4/projects', t))(
            "glpat-" + rand(r, 20, B64URL)),
    ],
    "aws_access_key": [
        lambda r: (lambda t: (f"the access key id {t} belongs to ci", t))(
            "AKIA" + rand(r, 16, string.ascii_uppercase + "234567")),
    ],
    "aws_secret_key": [
        lambda r: (lambda t: (f"[default]\naws_secret_access_key = {t}\nregion = eu-west-1", t))(rand(r, 40, B64)),
    ],
    "google_api_key": [lambda r: (lambda t: (f"maps key {t} in the config", t))("AIza" + rand(r, 35, B64URL))],
    "anthropic_key": [
        lambda r: (lambda t: (f"I used {t} for Claude", t))("sk-ant-api03-" + rand(r, 93, B64URL) + "AA"),
    ],
    "openai_key": [
        lambda r: (lambda t: (f"openai: {t} (old)", t))("sk-" + rand(r, 48)),
        lambda r: (lambda t: (f"the project key {t} works", t))("sk-proj-" + rand(r, 120, B64URL)),
    ],
    "stripe_key": [lambda r: (lambda t: (f"billing uses {t} in prod", t))("sk_live_" + rand(r, 24))],
    "vault_token": [lambda r: (lambda t: (f"VAULT_TOKEN is {t} now", t))("hvs." + rand(r, 24, B64URL))],
    "npm_token": [lambda r: (lambda t: (f"//registry.npmjs.org/:_authToken={t}", t))("npm_" + rand(r, 36))],
    "pypi_token": [lambda r: (lambda t: (f"twine upload -p {t} dist/*", t))("pypi-AgEIcHlwaS5vcmc" + rand(r, 60))],
    "sendgrid_key": [lambda r: (lambda t: (f"mail via {t} ok", t))(f"SG.{rand(r, 22)}.{rand(r, 43)}")],
    "jwt": [
        lambda r: (lambda t: (f"the session cookie was {t} when it failed", t))(
            b64url_json({"alg": "HS256", "typ": "JWT"}) + "." + b64url_json({"sub": rand(r, 8), "exp": 1700000000})
            + "." + rand(r, 43, B64URL)),
    ],
    "bearer_token": [
        lambda r: (lambda t: (f"curl -H 'Authorization: Bearer {t}' https://api.corp.io/v1", t))(rand(r, 40, B64URL)),
        lambda r: (lambda t: (f"I sent Bearer {t} and got 401", t))(rand(r, 32)),
    ],
    "sentry_dsn": [
        lambda r: (lambda k: (f"SENTRY_DSN=https://{k}@o{r.randrange(10**5, 10**6)}.ingest.sentry.io/42 set", k))(
            rand(r, 32, HEX)),
    ],
    "cookie": [
        lambda r: (lambda c: (f'curl -H "Cookie: {c}" https://gitlab.com/admin', c))(
            f"_gitlab_session={rand(r, 32, HEX)}; known_sign_in={rand(r, 20)}"),
    ],
    "basic_auth": [
        lambda r: (lambda t: (f"Authorization: Basic {t}\nAccept: */*", t))(
            base64.b64encode(f"deploy:{password(r)}".encode()).decode()),
    ],
    "connection_string": [
        lambda r: (lambda p: (f"KB_DATABASE_URL=postgresql://kb:{p}@db:5432/kb was wrong", p))(rand(r, 16)),
        lambda r: (lambda p: (f"cache at redis://:{p}@redis-master.kb.svc:6379/0 today", p))(rand(r, 20)),
    ],
    "url_credentials": [
        lambda r: (lambda p: (f"git remote add ops https://deploy:{p}@git.corp.io/ops/runbooks.git", p))(rand(r, 18)),
    ],
    "password": [
        lambda r: (lambda p: (f"the admin password is {p} for now", p))(password(r)),
        lambda r: (lambda p: (f"fyi pw: {p} (temporary)", p))(password(r)),
        lambda r: (lambda p: (f"DB_PASSWORD: {p}\nDB_HOST: db", p))(password(r)),
        lambda r: (lambda p: (f"export PGPASSWORD='{p}'\npsql -h db", p))(password(r)),
        lambda r: (lambda p: (f"mysql --password {p} -h db", p))(password(r)),
        lambda r: (lambda p: (f"CREATE USER kb WITH PASSWORD '{p}';", p))(password(r)),
        lambda r: (lambda p: (f"curl -u admin:{p} https://es.corp.io:9243/_cat", p))(password(r)),
        lambda r: (lambda p: (f"env:\n  - name: MYSQL_ROOT_PASSWORD\n    value: \"{p}\"\n", p))(password(r)),
        lambda r: (lambda p: (f"the admin password is {p}", p))("swordfish"),  # a plain word, at clause end
        lambda r: (lambda p: (f"비밀번호는 {p}입니다", p))(password(r)),
        lambda r: (lambda p: (f"DB 비밀번호: {p} 로 접속", p))(password(r)),
        lambda r: (lambda p: (f"암호는 `{p}`이다.", p))(password(r)),
        lambda r: (lambda p: (f"패스워드 = {p}", p))(password(r)),
        lambda r: (lambda p: (f"redis-cli -h 10.0.0.1 -a {p} ping", p))(password(r)),
        lambda r: (lambda p: (f"mysql -uroot -p{p} gitlab", p))(password(r)),
        lambda r: (lambda p: (f"set the root password to {p} asap", p))(password(r)),
        lambda r: (lambda p: (f"db password = {p}&3 now", p + "&3"))(password(r)),
        lambda r: (lambda p: (f"How do I rotate the DB password? It is currently {p} on prod.", p))(password(r)),
    ],
    "token": [
        lambda r: (lambda t: (f'export API_TOKEN="{t}"\nrun it', t))(rand(r, 32)),
        lambda r: (lambda t: (f"토큰은 {t} 입니다", t))(rand(r, 24)),
        lambda r: (lambda t: (f"https://grafana.corp.io/d/x?access_token={t}&orgId=1", t))(rand(r, 30)),
        lambda r: (lambda t: (f"/users/password/edit?reset_password_token={t}", t))(rand(r, 20)),
        lambda r: (lambda t: (f"토큰 값은 {t} 입니다", t))(rand(r, 18)),
    ],
    "secret": [
        lambda r: (lambda t: (f'{{"client_id": "kb-bot", "client_secret": "{t}"}}', t))(rand(r, 32)),
        lambda r: (lambda t: (f"SLACK_SIGNING_SECRET={t} in the env", t))(rand(r, 32, HEX)),
    ],
    "generic_api_key": [
        lambda r: (lambda t: (f"api_key = {t}\ntimeout = 5", t))(rand(r, 32)),
        lambda r: (lambda t: (f"use this token {t} to log in", t))(rand(r, 28)),  # no separator: entropy + keyword
    ],
    "email": [
        lambda r: (lambda e: (f"ask {e} for access", e))(f"{rand(r, 6, string.ascii_lowercase)}.kim@corp-mail.io"),
        lambda r: (lambda e: (f"담당자: {e} 에게 문의", e))(f"ops+{rand(r, 4, string.ascii_lowercase)}@kb.co.kr"),
    ],
}

CASES = [pytest.param(kind, i, id=f"{kind}-{i}") for kind, samples in SAMPLES.items() for i in range(len(samples))]


@pytest.mark.parametrize(("kind", "index"), CASES)
def test_each_kind_is_redacted_and_the_sentence_survives(kind: str, index: int) -> None:
    for seed in range(3):
        text, secret = SAMPLES[kind][index](random.Random(f"{kind}-{index}-{seed}"))
        result = redact(text)
        assert secret not in result.text
        assert result.text == text.replace(secret, f"[REDACTED:{kind}]"), result.findings
        assert result.kinds() == [kind] and result.found
        assert [text[f.start:f.end] for f in result.findings] == [secret]


def test_every_declared_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(SECRET_KINDS)
    assert len(SECRET_KINDS) == len(set(SECRET_KINDS))


def test_findings_never_hold_the_secret() -> None:
    rng = random.Random(7)
    secret = password(rng)
    result = redact(f"password={secret}")
    assert isinstance(result, Redacted) and result.findings == (Finding("password", 9, 9 + len(secret)),)
    assert secret not in repr(result)
    assert [f.name for f in Finding.__dataclass_fields__.values()] == ["kind", "start", "end"]


def test_several_secrets_on_one_line_and_specific_kinds_win() -> None:
    rng = random.Random(11)
    slack = f"xoxb-{rng.randrange(10**11)}-{rng.randrange(10**11)}-{rand(rng, 24)}"
    pw, tok = password(rng), rand(rng, 20)
    text = f'SLACK_BOT_TOKEN={slack} password={pw} token="{tok}" user=kb host=db'
    result = redact(text)
    assert result.text == ("SLACK_BOT_TOKEN=[REDACTED:slack_token] password=[REDACTED:password] "
                           'token="[REDACTED:token]" user=kb host=db')
    assert result.kinds() == ["password", "slack_token", "token"]


def test_redaction_is_idempotent_and_helpers_agree() -> None:
    rng = random.Random(3)
    text = f"the password is {password(rng)} and mail {rand(rng, 5, string.ascii_lowercase)}@corp.io"
    once = redact_text(text)
    assert once == redact(text).text and not redact(once).found
    assert redact("").text == "" and not redact("nothing to see").found


KEEP = [
    # hashes, ids and digests in ordinary docs
    "git checkout 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39 && git log -1",
    "job 123e4567-e89b-12d3-a456-426614174000 failed on runner 42",
    "image: registry.gitlab.com/gitlab-org/build/cng/gitlab-webservice-ee@sha256:"
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  gitlab-16.4.1.tar.gz",
    "the token fingerprint is SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
    "kubectl get secret db-user-pass -o jsonpath='{.data.password}' | base64 --decode",
    "kubectl -n gitlab get pods -l app=webservice -o wide",
    "secretKeyRef:\n  name: mysecret\n  key: password",
    "curl --header \"PRIVATE-TOKEN: $GITLAB_API_TOKEN\" https://gitlab.com/api/v4/projects",
    "version 1.27.3 on 10.0.0.1:6379, node pool-a-0f3c",
    "see docs/x.md#token-rotation and https://gitlab.com/gitlab-com/runbooks/-/blob/master/docs/vault/vault.md",
    "git clone git@gitlab.com:gitlab-org/gitlab.git",
    "ssh alice@bastion-01.gprd.gitlab.com",
    "docker login -u jdoe@example.com",
    "max_tokens: 1024\ntoken_expiry: 3600\npassword_file: /etc/kb/pw",
    "echo $PASSWORD | docker login --password-stdin",
    "passwordless sudo; OLDPWD=/home/kb PWD=/root",
    "vault kv get -field=password secret/data/ops/db",
    "AWS docs use AKIAIOSFODNN7EXAMPLE as the sample access key",
    # placeholders and references
    "password: <password>",
    "PASSWORD=$PASSWORD",
    "password: ${DB_PASSWORD}",
    "password: $(vault read -field=password secret/db)",
    "password: changeme",
    "password: xxx\nPGPASSWORD=xxx pg_repack",
    "password=REDACTED host=<target>",
    "ALTER ROLE kb ENCRYPTED PASSWORD '[new-password]'",
    "export new_password=$(openssl rand -base64 32)",
    "Authorization: Bearer $TOKEN",
    "postgresql://kb:${DB_PASSWORD}@db:5432/kb",
    "https://<es_username>:<password>@<cluster_url>:<es_port>",
    "--docker-password=DOCKER_PASSWORD --docker-email=DOCKER_EMAIL",
    '"token": "get_me_from_vault"',
    "password:    12 bytes",
    "10.0.0.1:6379> auth <password>",
    # prose about passwords, not passwords
    "the password is stored in 1Password under Production",
    "The token is stored in Vault; the secret is rotated monthly.",
    "the password is required to log in",
    "Password: see the 1Password entry",
    "Bearer tokens are short-lived and the Basic authentication header is disabled.",
    "user: elastic, password: it should have been added to 1password",
    "The password policy requires 12+ chars & symbols!",
    "The password must be at least 12 characters long.",
    "Use the password to login.",
    "Note on the token: it expires",
    "what is the password for staging?",
    "Runner registration token is in the CI/CD settings",
    "Set `token_ttl: 24h` in the config",
    'git commit -m "fix token refresh" && git push',
    "The sha256 of the token file is 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "set cookie: see the docs",
    "mysql -u root -p gitlab",
    "Enter password:\n      Re-enter password:",
    "비밀번호는 1Password에 저장되어 있다",
    "쿠버네티스 시크릿은 기본적으로 암호화되지 않은 상태로 저장된다.",
    "토큰이 만료되면 `kubectl create token`으로 다시 만든다.",
]


@pytest.mark.parametrize("text", KEEP)
def test_runbook_content_is_not_a_secret(text: str) -> None:
    result = redact(text)
    assert result.text == text, result.findings


def test_scrub_sentry_event_and_log_records() -> None:
    rng = random.Random(5)
    pw, cookie, tok = password(rng), rand(rng, 30), rand(rng, 30)
    event = {
        "request": {"headers": {"Authorization": f"Bearer {tok}", "Cookie": f"session={cookie}", "Accept": "*/*"},
                    "data": f"password={pw}&user=kb"},
        "extra": {"db_password": pw, "input_tokens": 12, "korean_tokenizer": "kagome_kr", "nothing": None},
        "breadcrumbs": [("message", f"login as ops@corp.io with pw: {pw}"), ["X-Api-Key", tok]],
        "tags": ("x", 1, True),
    }
    out = scrub(event)
    dumped = json.dumps(out)
    for secret in (pw, cookie, tok, "ops@corp.io"):
        assert secret not in dumped
    assert isinstance(out, dict)
    assert out["request"]["headers"]["Accept"] == "*/*"
    assert out["request"]["data"] == "password=[REDACTED:password]&user=kb"
    assert out["extra"] == {"db_password": "[REDACTED:password]", "input_tokens": 12,
                            "korean_tokenizer": "kagome_kr", "nothing": None}
    assert out["breadcrumbs"][0] == ("message", "login as [REDACTED:email] with pw: [REDACTED:password]")
    assert out["tags"] == ("x", 1, True) and scrub(42) == 42 and scrub("a@corp.io") == "[REDACTED:email]"
    loop: list[object] = []
    loop.append(loop)
    assert "too_deep" in json.dumps(scrub(loop), default=str)


def test_adversarial_input_stays_fast() -> None:
    for text in ("password=" * 20000, "a-" * 50000, "-----BEGIN PRIVATE KEY-----\n" * 3000, "a@b.co " * 20000,
                 "Authorization: " * 20000, "https://a:" * 20000, "the password is " * 20000, "비밀번호는 " * 20000):
        started = time.perf_counter()
        redact(text)
        assert time.perf_counter() - started < 3, text[:30]


def test_runbook_corpus_false_positives() -> None:
    """The real corpus: few documents change, and what changes is a credential or an email, never docs content."""
    documents = corpus_documents()
    changed: Counter[str] = Counter()
    documents_changed = 0
    for document in documents:
        text = document["text"]
        result = redact(text)
        if not result.found:
            assert result.text == text
            continue
        documents_changed += 1
        changed.update(result.kinds())
        for finding in result.findings:
            value = text[finding.start:finding.end]
            assert not re.fullmatch(r"[0-9a-f]{7,64}|[0-9a-f-]{36}|sha256:\w+", value), (document["id"], value)
            assert finding.kind in {"password", "token", "secret", "email"}, (document["id"], finding.kind)
        assert result.text.lower().count("1password") == text.lower().count("1password")
    print(f"\ncorpus: {documents_changed}/{len(documents)} documents changed; kinds by document: {dict(changed)}")
    assert documents_changed / len(documents) < 0.05
