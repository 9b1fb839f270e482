"""Credentials and URLs: a token goes only to the origin it was given for, and no URL is repeated with
the credentials someone wrote into it.

- ``redact`` masks the credentials of every URL in a text (a URL, an error, a log line): user-info
  (``user:password@``, the password holding any character but ``@``, with or without a scheme) and the
  values of query-string keys that name a secret (``?token=``, ``X-Amz-Signature=``, ...);
  ``has_credentials`` finds the same.
- ``refuse_plain_http_token`` refuses to send a token over plain HTTP unless the caller allows it.
- ``urlopen`` is urllib's, except that a request carrying credentials is not redirected to another
  origin (scheme, host, port): urllib's own redirect handler copies every header, ``Authorization``
  included, to wherever a server points, https:// to http:// too.
"""

import re
import urllib.parse
import urllib.request

# Each part is bounded (a user, a password, a scheme, a key: 256 characters at most) and starts where a word does,
# so that masking is linear in a text's length: unbounded, a long run of such characters is rescanned from each.
# After a scheme: "user@", or "user:password@" whose password holds anything but '@' and quotes ('/', '?', '#'
# and spaces included).
USER_INFO = re.compile(r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31}://)"
                       r"(?:[^\s/?#@'\"]{1,256}|[^\s/@'\"]{0,256}:[^@'\"]{0,256}?)@")
# Without a scheme: "user:password@host..." standing on its own (not inside a word or a URL).
BARE_USER_INFO = re.compile(r"(?<![\w.+%/:@-])[\w.+%-]{1,256}:(?!//)[^\s@'\"]{1,256}@(?=[\w-])")
# A query-string key that names a secret, and its value.
SECRET_QUERY = re.compile(r"(?P<key>[?&][\w.-]{0,64}?(?:token|secret|passw|pwd|signature|sig|credential|"
                          r"api[_-]?key|access[_-]?key|auth)[\w.-]{0,64}=)[^&#\s'\"]+", re.IGNORECASE)
CREDENTIAL_HEADERS = ("Authorization", "Proxy-authorization", "Cookie")  # as urllib.request.Request spells them
DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(text: object) -> str:
    """``text`` (or an error, as str() shows it) with the credentials of each URL in it masked:
    ``http://user:pw@host/`` -> ``http://***@host/``, ``key:secret@bucket`` -> ``***@bucket``,
    ``?token=abc`` -> ``?token=***``."""
    text = str(text)
    if "@" in text:  # user-info ends with it
        text = BARE_USER_INFO.sub("***@", USER_INFO.sub(r"\g<scheme>***@", text))
    return SECRET_QUERY.sub(r"\g<key>***", text) if "=" in text else text


def shown(value: object, longest: int = 200) -> str:
    """``value`` as a message repeats it: its repr, credentials masked (before it is cut, so no part of a secret
    is left), at most ``longest`` characters of it."""
    text = repr(redact(value) if isinstance(value, str) else value)
    return text if len(text) <= longest else text[:longest] + "…"


def has_credentials(text: object) -> bool:
    """Whether ``text`` holds a URL's credentials in any form ``redact`` masks."""
    return redact(text) != str(text)


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, the default port filled in: what a browser calls the URL's origin."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a number: no origin is equal to it
        port = -1
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def refuse_credentials_in(name: str, url: str, instead: str) -> None:
    """One line, the URL masked, when ``url`` (the value of ``name``) has credentials written into it."""
    if has_credentials(url):
        raise ValueError(f"{name} {redact(url)} has credentials in it, which would be shown and stored wherever the "
                         f"URL is: leave them out and {instead}")


def refuse_plain_http_token(url: str, token: str | None, allowed: bool) -> None:
    """A bearer token over plain HTTP is readable by anyone on the way: refused unless ``allowed``."""
    if token and urllib.parse.urlsplit(url).scheme.lower() == "http" and not allowed:
        raise ValueError(f"refusing to send a token to {redact(url)} over plain HTTP, where anyone on the way reads "
                         "it: use the server's https:// address, or pass --allow-plain-http-token where the network "
                         "between is yours (a test server on 127.0.0.1)")


def checked_token(token: str, where: str) -> str:
    """``token`` as an ``Authorization`` header may carry it: visible ASCII on one line. Refused without
    repeating it (a header with a newline in it would be refused by the HTTP library, token and all)."""
    if not token:
        raise ValueError(f"{where} is empty: it must hold the bearer token")
    if "\n" in token:
        raise ValueError(f"{where} holds {token.count(chr(10)) + 1} lines: it must hold the bearer token alone, on "
                         "one line")
    if not all("!" <= c <= "~" for c in token):
        raise ValueError(f"{where} holds a space or a character that is not ASCII, which no bearer token has: "
                         "it must hold the token alone")
    return token


def read_token_file(path: str) -> str:
    """The token in ``path`` (``--token-file``), which must hold one."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as error:
        raise ValueError(f"--token-file {path} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"--token-file {path} is not text: it must hold the bearer token") from None
    return checked_token(token, f"--token-file {path}")


class CrossOriginRedirect(ValueError):
    """A server pointed a request that carries credentials at another origin."""


class _KeepCredentialsAtHome(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        carries = any(req.has_header(name) for name in CREDENTIAL_HEADERS)
        if carries and origin(newurl) != origin(req.full_url):
            raise CrossOriginRedirect(
                f"{redact(req.full_url)} redirected to {redact(newurl)}, another origin (scheme, host or port): the "
                "token is not sent there and the redirect is not followed; if that is the server, use its address")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def urlopen(request: urllib.request.Request, *, timeout: float, context=None):
    """``urllib.request.urlopen`` whose redirects keep a request's credentials at its origin."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _KeepCredentialsAtHome)
    return opener.open(request, timeout=timeout)
