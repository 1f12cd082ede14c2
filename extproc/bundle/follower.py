"""``extproc serve --bundle URL``: follow a signed bundle location.

One follower per ``serve`` (in the supervisor's process with ``--workers``;
workers just serve ``DIR/current`` through their ordinary hot reload). It
polls the archive and its signature with conditional GETs, and a changed
pair goes through, in order: signature check over the raw bytes (nothing is
parsed before), no rollback (signed earlier than the active bundle: refused),
archive structure and manifest digests, unpack into a private directory,
full policy validation (and the reload guard against mass route removal),
then one atomic switch of ``DIR/current``. Any refusal is one error line and
the active bundle keeps serving. Network failures back off exponentially
with jitter; the active bundle stays on disk, so a restart while the server
is down serves it (verified again first).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from extproc.bundle import fetch
from extproc.bundle.archive import BundleError
from extproc.bundle.cache import Active, BundleCache, open_signed, revision_name
from extproc.bundle.signing import KeyRing, SignatureError
from extproc.policy.loader import PolicyLoadError, route_removal_error, validate_policy_dir
from extproc.policy.model import PolicySet

log = logging.getLogger("extproc.bundle")


class BundleUnavailable(Exception):
    """No bundle to serve at start-up; the message is one line."""


class _Refused(Exception):
    pass


@dataclass(frozen=True, slots=True)
class FollowerOptions:
    url: str
    directory: Path
    signature_url: str | None = None  # default: url + ".sig"
    poll: float = 30.0
    timeout: float = 10.0
    max_backoff: float = 300.0

    @property
    def sig_url(self) -> str:
        return self.signature_url or self.url + ".sig"


@dataclass(slots=True)
class _Seen:
    etag: str | None
    body: bytes


class BundleFollower:
    def __init__(self, options: FollowerOptions, keys: KeyRing, rng: random.Random | None = None):
        self.options = options
        self.keys = keys
        self.cache = BundleCache(options.directory)
        self.active: Active | None = None
        self._policy: PolicySet | None = None  # the active bundle's, for the route-removal guard
        self._seen: dict[str, _Seen] = {}
        self._last_refused: bytes | None = None
        self.last_refusal: str | None = None
        self.failures = 0
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def revision(self) -> str | None:
        return self.active.revision if self.active is not None else None

    # -- start-up ---------------------------------------------------------

    def start_up(self) -> Path:
        """Restore the bundle on disk, fetch once; the directory to serve.
        Raises ``BundleUnavailable`` if there is nothing valid to serve."""
        self._restore()
        try:
            self.poll_once()
        except fetch.FetchError as exc:
            if self.active is None:
                raise BundleUnavailable(
                    f"cannot fetch the policy bundle ({exc}) and {self.cache.directory} holds no valid bundle"
                ) from None
            log.warning(
                "policy bundle server unreachable (%s); serving the last good bundle from disk, revision %s",
                exc,
                self.active.revision,
                extra={"revision": self.active.revision, "url": fetch.redact(self.options.url)},
            )
        if self.active is None:
            raise BundleUnavailable(f"no valid policy bundle to serve: {self.last_refusal or 'none published'}")
        return self.cache.current

    def _restore(self) -> None:
        try:
            active = self.cache.load_active(self.keys)
        except (SignatureError, BundleError) as exc:
            log.error(
                "the policy bundle on disk is not usable: %s", exc, extra={"directory": str(self.cache.directory)}
            )
            return
        if active is None:
            return
        try:
            policy = validate_policy_dir(self.cache.current)
        except (PolicyLoadError, OSError) as exc:
            log.error("the policy bundle on disk does not validate: %s", str(exc).splitlines()[0])
            return
        self.active, self._policy = active, policy
        etags = self.cache.load_etags()
        self._seen = {
            self.options.url: _Seen(etags.get("archive"), active.archive),
            self.options.sig_url: _Seen(etags.get("signature"), active.signature),
        }
        log.info("policy bundle on disk", extra={"revision": active.revision, "signed_at": active.statement.signed_at})

    # -- one poll ---------------------------------------------------------

    def poll_once(self) -> bool:
        """Fetch the pair if changed and activate it if it holds. Whether a
        new revision is now active. Raises ``FetchError``."""
        archive = self._get(self.options.url, missing_ok=False)
        signature = self._get(self.options.sig_url, missing_ok=True)
        if archive is None and signature is None:
            return False  # both 304
        return self._consider(self._seen[self.options.url].body, self._seen[self.options.sig_url].body)

    def _get(self, url: str, missing_ok: bool) -> bytes | None:
        """The new body of ``url``, or None if it did not change."""
        seen = self._seen.get(url)
        response = fetch.get(url, seen.etag if seen else None, self.options.timeout)
        if response.status == 304 and seen is not None:
            return None
        if response.status == 404 and not missing_ok:
            raise fetch.FetchError(f"{fetch.redact(url)}: HTTP 404")
        self._seen[url] = _Seen(response.etag, response.body)
        return response.body

    def _consider(self, archive: bytes, signature: bytes) -> bool:
        fingerprint = hashlib.sha256(archive).digest() + hashlib.sha256(signature).digest()
        active = self.active
        if active is not None and archive == active.archive and signature == active.signature:
            self._save_etags()
            return False
        if fingerprint == self._last_refused:
            return False  # refused and logged already
        try:
            activated = self._activate(archive, signature)
        except (SignatureError, BundleError, _Refused) as exc:
            self._last_refused = fingerprint
            self.last_refusal = str(exc)
            serving = active.revision if active is not None else "none"
            log.error(
                "policy bundle refused: %s; still serving revision %s",
                exc,
                serving,
                extra={"url": fetch.redact(self.options.url), "revision": serving, "reason": str(exc)},
            )
            return False
        self._last_refused = None
        self._save_etags()
        return activated

    def _activate(self, archive: bytes, signature: bytes) -> bool:
        statement, bundle = open_signed(archive, signature, self.keys)
        active = self.active
        if active is not None and statement.signed_at < active.statement.signed_at:
            raise _Refused(
                f"revision {statement.revision} was signed at {statement.signed_at}, before the active "
                f"revision {active.revision} ({active.statement.signed_at}); to roll back, sign it again"
            )
        if active is not None and statement.sha256 == active.statement.sha256:
            self.cache.replace_signature(active.name, signature)
            self.active = Active(statement, bundle, archive, signature, active.name)
            return False
        staged = self.cache.stage(bundle)
        try:
            try:
                policy = validate_policy_dir(staged)
            except PolicyLoadError as exc:
                more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
                raise _Refused(f"revision {statement.revision} does not validate: {exc.errors[0]}{more}") from None
            if self._policy is not None:
                refusal = route_removal_error(self._policy, policy, revision_name(statement))
                if refusal is not None:
                    raise _Refused(refusal.message)
            name = self.cache.activate(staged, statement, archive, signature)
        except BaseException:
            self.cache.discard(staged)
            raise
        previous = active.revision if active is not None else None
        self.active, self._policy = Active(statement, bundle, archive, signature, name), policy
        log.info(
            "policy bundle activated: revision %s",
            statement.revision,
            extra={
                "revision": statement.revision,
                "previous_revision": previous,
                "signed_at": statement.signed_at,
                "kid": statement.kid,
            },
        )
        return True

    def _save_etags(self) -> None:
        etags = {
            key: seen.etag
            for key, url in (("archive", self.options.url), ("signature", self.options.sig_url))
            if (seen := self._seen.get(url)) is not None and seen.etag is not None
        }
        try:
            self.cache.save_etags(etags)
        except OSError:
            pass  # advisory: the next restart downloads once more

    # -- the loop ---------------------------------------------------------

    def next_delay(self) -> float:
        """Seconds to the next poll: the interval with jitter (never later,
        so a fleet spreads out but each member keeps its promise), doubling
        per consecutive failure up to ``max_backoff`` (equal jitter)."""
        poll = self.options.poll
        if self.failures == 0:
            return poll * self._rng.uniform(0.8, 1.0)
        ceiling = min(max(self.options.max_backoff, poll), poll * 2.0 ** min(self.failures, 30))
        return self._rng.uniform(ceiling / 2, ceiling)

    def run(self) -> None:
        while not self._stop.wait(self.next_delay()):
            try:
                self.poll_once()
            except fetch.FetchError as exc:
                self.failures += 1
                log.warning(
                    "policy bundle fetch failed (%s); retrying with backoff, serving revision %s",
                    exc,
                    self.revision,
                    extra={"failures": self.failures, "revision": self.revision},
                )
                continue
            except Exception:  # the follower must outlive any surprise
                self.failures += 1
                log.exception("policy bundle follower error")
                continue
            if self.failures:
                log.info("policy bundle server reachable again", extra={"failures": self.failures})
            self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="extproc-bundle", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
