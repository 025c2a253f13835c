"""Breakpoint hits, as the backends and instrumented lines report them (a mixin of
`engine.Agent`, whose state it uses).

The backends' callbacks call `line_hit` for a line or function with breakpoints; an
instrumented line (see _codeswap.py) calls `hook_hit`, `hook_true` or `hook_error` as ordinary
code in the program's thread. Conditions, hit counts and log points are evaluated here; a stop
goes to `Agent.stop`.
"""

import threading

from . import req_breakpoints
from .breakpoints import hit_condition_true, render_log_message

_get_ident = threading.get_ident
JUMP = "jump"  # stop() result: a jump was requested at a stop inside an instrumented line's hook


class BreakpointHits(object):
    def line_hit(self, frame, bps, line, entry, hook=False, jump_ok=True):
        """Breakpoints at this location were reached. Returns True if the thread stopped.

        `hook`: called from an instrumented line (not a trace callback), which holds the thread
        busy (tracers and hooks ignore it) while agent code runs as ordinary code."""
        if self.detached:
            return False
        stop_ids = []
        cond_error = None
        logs = []
        for bp in bps:
            if not bp.enabled:
                continue
            if bp.kind == "function" and not entry:
                continue
            bp.hits += 1
            if bp.cond_code is not None:
                try:
                    if not eval(bp.cond_code, frame.f_globals, frame.f_locals):
                        continue
                except Exception as exc:
                    cond_error = "%s: %s" % (type(exc).__name__, exc)
                    stop_ids.append(bp)
                    continue
            if bp.ignore_count > 0:
                bp.ignore_count -= 1
                continue
            if bp.hit_op is not None:
                bp.cond_hits += 1
                if not hit_condition_true(bp.hit_op[0], bp.hit_op[1], bp.cond_hits):
                    continue
            if bp.log_parts is not None:
                logs.append(bp)
                continue
            stop_ids.append(bp)
        for bp in logs:
            self._send_log(bp, frame, line)
        if not stop_ids:
            return False
        return self.stop_at_breakpoints(frame, stop_ids, cond_error,
                                        hook_line=line if hook else None, jump_ok=jump_ok)

    def _send_log(self, bp, frame, line):
        tracer = self.tracer
        if tracer is not None and bp.id in tracer.log_bps:
            if tracer.count_log(bp):  # rate limited before the message is rendered
                tracer.logged(bp, frame, line, render_log_message(bp.log_parts, frame))
            return
        self.send_event("output", {"category": "log", "breakpoint": bp.id,
                                   "text": render_log_message(bp.log_parts, frame) + "\n",
                                   "file": frame.f_code.co_filename, "line": line})

    def stop_at_breakpoints(self, frame, stop_ids, cond_error, hook_line=None, jump_ok=True):
        """Stop for these breakpoints. Returns True, or JUMP from a hook that must jump."""
        if self.detached:
            return False
        ident = _get_ident()
        if (ident in self.busy and hook_line is None) or ident in self.agent_threads:
            return False
        temporaries = [bp for bp in stop_ids if bp.temporary and cond_error is None]
        if temporaries:
            with self.lock:
                for bp in temporaries:
                    req_breakpoints.remove_breakpoint(self, bp)
                self.bps_changed()
            for bp in temporaries:
                self.send_event("breakpoint", {"reason": "removed", "breakpoint": bp.to_dict()})
        extra = {"condition_error": cond_error} if cond_error else None
        ids = [bp.id for bp in stop_ids]
        if hook_line is None:
            self.stop(frame, "breakpoint", "line", bp_ids=ids, extra=extra)
            return True
        if self._hook_stop(frame, hook_line, "breakpoint", ids, extra, jump_ok) is JUMP:
            return JUMP
        return True

    # ------------------------------------------------------------------------------------------
    # instrumented lines (see _codeswap.py): these run in the program's thread, as ordinary code

    def _hook_guard(self, frame, line):
        """The thread calling a hook, now busy; None if the hook must do nothing."""
        if self.detached:
            return None
        ident = _get_ident()
        if ident in self.stops or ident in self.busy or ident in self.agent_threads:
            return None
        if self.skip_hook:
            skip = self.skip_hook.pop(ident, None)
            if skip is not None and skip[0] is frame and skip[1] == line:
                return None  # a jump just landed here: like a trace, do not report this line
        # Unlike a trace callback, a hook runs with tracing (a step) and monitoring live: the
        # agent's own work, and the stdlib code it calls, must not be traced or stepped into.
        self.busy.add(ident)
        return ident

    def _hook_stop(self, frame, line, reason, bp_ids=(), extra=None, jump_ok=True):
        frames = self.visible_frames(frame)
        if frames and frames[0][0] is frame:
            frames[0] = (frame, line)  # the line being executed is the hook's, i.e. this one
        return self.stop(frame, reason, "line", bp_ids=bp_ids, frames=frames, in_callback=False,
                         extra=extra, hook="jump" if jump_ok else "nojump")

    def _in_hook(self, frame, line, work, *args):
        """Runs `work(ident, *args)` for an instrumented line of the calling thread, busy
        meanwhile; None if the hook must do nothing or the agent failed (reported, never
        raised into the program)."""
        ident = self._hook_guard(frame, line)
        if ident is None:
            return None
        try:
            return work(ident, *args)
        except self.control_exceptions:
            raise
        except Exception:
            self.internal_error()
            return None
        finally:
            self.busy.discard(ident)

    def hook_hit(self, hook, frame, jump_ok=True):
        """An instrumented line: every breakpoint there, evaluated like a tracer would.
        Returns True when the hook's statement must complete a jump."""
        return self._in_hook(frame, hook.line, self._hook_hit, hook, frame, jump_ok)

    def _hook_hit(self, ident, hook, frame, jump_ok):
        line = hook.line
        deferred = None
        if self.deferred:
            deferred = self.deferred.pop(ident, None)
            if deferred is not None and (deferred[0] is not frame or deferred[1] != line):
                deferred = None
        lines = self.file_bps.get(hook.file)
        bps = lines.get(line) if lines else None
        if bps:
            res = self.line_hit(frame, bps, line, False, hook=True, jump_ok=jump_ok)
            if res:
                return True if res is JUMP else None
        if deferred is not None:
            reason = self.line_stop_reason(ident, frame, line)
            if reason is not None \
                    and self._hook_stop(frame, line, reason, jump_ok=jump_ok) is JUMP:
                return True
        return None

    def _current_hook_bp(self, hook):
        bp = hook.bp
        if hook.retired or bp is None or self.bps.get(bp.id) is not bp or not bp.enabled:
            return None
        return bp

    def hook_true(self, hook, frame):
        """An inline condition was true (its hit was counted): the rest of pdb's sequence."""
        return self._in_hook(frame, hook.line, self._hook_true, hook, frame)

    def _hook_true(self, ident, hook, frame):
        bp = self._current_hook_bp(hook)
        if bp is None:
            return None
        if bp.ignore_count > 0:
            bp.ignore_count -= 1
            return None
        if bp.hit_op is not None:
            bp.cond_hits += 1
            if not hit_condition_true(bp.hit_op[0], bp.hit_op[1], bp.cond_hits):
                return None
        if bp.log_parts is not None:
            self._send_log(bp, frame, hook.line)
            return None
        if self.stop_at_breakpoints(frame, [bp], None, hook_line=hook.line) is JUMP:
            return True
        return None

    def hook_error(self, hook, frame, exc):
        """An inline condition raised: like pdb, stop and report the error."""
        self._in_hook(frame, hook.line, self._hook_error, hook, frame, exc)

    def _hook_error(self, ident, hook, frame, exc):
        bp = self._current_hook_bp(hook)
        if bp is not None:
            # in an `except` block: no jump from here (the statement cannot complete one)
            self.stop_at_breakpoints(frame, [bp], "%s: %s" % (type(exc).__name__, exc),
                                     hook_line=hook.line, jump_ok=False)
