"""Runs inside gdb, attached to the job: queue the injected code as a Python pending call.

Not imported by dspy-top; gdb's own Python loads it before attaching (`-iex source`) and runs
`main()` once attached (`-ex`). What `main` does, while the job is stopped:

1. Check it is x86-64. (dspy_top.attach.symbols already found, from the files and
   /proc/PID/maps, where `mmap`, `Py_AddPendingCall` and `PyRun_SimpleString` are, and checked
   `Py_Version`, before gdb stopped the job: gdb loads no symbols.)
2. Pick a thread parked in a system call, best a `futex` wait (a lock or the GIL): it holds no
   lock that the two functions called below take, and libc's code around a `syscall` keeps
   nothing in vector registers (the calls may use them as scratch; only general registers
   are restored).
3. On that thread, call `mmap` (a bare system call: no allocator, no lock; the other threads stay
   stopped) for a page, write the code into it with ptrace, then, the other threads running, call
   `Py_AddPendingCall(PyRun_SimpleString, page)`, which
   takes only the pending-calls lock and never the GIL. The main thread runs it at its next
   eval-breaker check, where the interpreter may run Python; other threads are never paused
   holding the GIL or inside malloc, because nothing here allocates.
4. If the main thread is parked in a `futex` wait (joining a thread pool, waiting on a lock),
   make that wait return EINTR, as a signal would: Python's lock acquire then runs pending
   calls and waits again. Any other futex user treats it as the spurious wake-up it allows.
5. Detach. Prints one line, `DSPY_TOP_GDB {json}`, for `dspy_top.attach.gdb`.

A second, shorter run (`{"nudge": true}`) does step 4 alone: a main thread stopped just before
it entered a lock wait missed both the nudge and the eval breaker, and waits until the lock is
released (a thread pool's join: as long as the job's longest task). session.py asks for it while
the code stays queued and the main thread sits in a futex wait.

Each call is made by hand (return address on the stack, a temporary breakpoint there, the
other threads running meanwhile so no lock holder stays stopped) and the thread's general
registers are restored after it. gdb's own `call` is not used: it saves and restores the
whole extended register state, which gdb 13 cannot write back on CPUs with AMX (EFAULT), and
that leaves the thread broken.
"""

import json
import os

import gdb  # provided by gdb

FUTEX = 202  # x86-64 system call number
RESTARTING = (-512, -513, -514, -516)  # -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK
EINTR = -4
SAVED = (
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "rsp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "eflags",
    "orig_rax",
)
ARGUMENTS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS = 3, 0x22


class Refusal(Exception):
    """Stop here and tell dspy-top why: (status word, message)."""


def value(expression):
    return int(gdb.parse_and_eval(expression))


def registers(thread):
    thread.switch()
    return {name: value(f"${name}") for name in ("orig_rax", "rax")}


def parked(state):
    """Stopped inside a system call that will restart: the thread sits in a libc wrapper."""
    return state["orig_rax"] >= 0 and state["rax"] in RESTARTING


def parked_in_futex(state):
    return state["orig_rax"] == FUTEX and state["rax"] in RESTARTING


def call(thread, address, arguments, return_to, alone=False):
    """Run `address(*arguments)` on `thread`; its return value. The other threads run meanwhile,
    so that none stays stopped holding a lock it needs, unless `alone` (a call that takes no lock:
    then resuming and stopping them again is time the job would be paused for nothing)."""
    thread.switch()
    saved = {name: value(f"${name}") for name in SAVED}
    inferior = gdb.selected_inferior()
    stack = ((saved["rsp"] - 4096) & ~0xF) - 8  # far below the red zone; 16-byte aligned after the push
    returned = False
    try:
        inferior.write_memory(stack, (return_to & (2**64 - 1)).to_bytes(8, "little"))
        for register, argument in zip(ARGUMENTS, arguments):
            gdb.execute(f"set var ${register} = {argument}")
        gdb.execute("set var $orig_rax = -1")  # no system call to restart when it resumes here
        gdb.execute("set var $rax = 0")
        gdb.execute(f"set var $rsp = {stack}")
        gdb.execute(f"set var $rip = {address}")
        gdb.execute(f"tbreak *{return_to}", to_string=True)
        gdb.execute(f"set scheduler-locking {'on' if alone else 'off'}")
        for _ in range(100):  # another event (a new thread, a signal) may stop the process first
            gdb.execute("continue", to_string=True)
            if not inferior.is_valid() or inferior.pid == 0 or not thread.is_valid():
                raise Refusal("exited", "the process exited during the attach")
            thread.switch()
            if value("$rip") == return_to and value("$rsp") == stack + 8:
                returned = True
                break
        else:
            raise Refusal("error", "the injected call did not return")
        return value("$rax")
    finally:
        gdb.execute("set scheduler-locking off")
        # Put the thread back where it was (its interrupted system call restarts when it resumes),
        # unless it is still inside the call: then it must go on to return first.
        if thread.is_valid() and (returned or value("$rip") == address):
            thread.switch()
            for name in SAVED:
                gdb.execute(f"set var ${name} = {saved[name]}")


def stopped():
    """The stopped job (checked to be x86-64), its threads by id and its main thread."""
    for command in (
        "set pagination off",
        "set confirm off",
        "set scheduler-locking off",
        "handle all nostop noprint pass",
    ):
        gdb.execute(command, to_string=True)
    inferior = gdb.selected_inferior()
    if "x86-64" not in inferior.architecture().name():
        raise Refusal(
            "unsupported-arch",
            f"attaching through gdb works on x86-64 only, not "
            f"{inferior.architecture().name()}; Python 3.14's sys.remote_exec works anywhere",
        )
    threads = sorted(inferior.threads(), key=lambda t: t.ptid[1])
    main = next((t for t in threads if t.ptid[1] == inferior.pid), threads[0])
    return inferior, threads, main


def wake(main):
    """Make the main thread's futex wait return EINTR, if it is parked in one (step 4)."""
    if not parked_in_futex(registers(main)):
        return False
    gdb.execute(f"set var $rax = {EINTR}")
    return True


def nudge():
    """Only step 4, for a main thread that went into a lock wait just as the code was queued
    (it was between its last eval-breaker check and the wait when gdb stopped it)."""
    _inferior, _threads, main = stopped()
    return {"status": "nudged" if wake(main) else "not-parked"}


def inject(request):
    at = request["addresses"]
    inferior, threads, main = stopped()
    states = {t.ptid[1]: registers(t) for t in threads}
    # Best a thread waiting on a lock; else one in another system call; the main thread last.
    ranked = sorted(
        (t for t in threads if parked(states[t.ptid[1]])),
        key=lambda t: (t is main, not parked_in_futex(states[t.ptid[1]])),
    )
    if not ranked:
        raise Refusal("busy", "no thread of the process is waiting in a system call right now")
    worker = ranked[0]
    # The code names its own page (CODE_PAGE), so that the job can unmap it once parsed.
    size = (len(request["code"].encode()) + 64 + 4095) // 4096 * 4096
    return_to = at["entry"]
    # mmap is a bare system call: it runs alone.
    page = call(
        worker, at["mmap"], [0, size, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, 2**64 - 1, 0], return_to, alone=True
    )
    if page <= 0 or page >= 2**63:
        raise Refusal("error", "mmap failed in the process")
    code = request["code"].replace("CODE_PAGE", repr([page, size])).encode() + b"\0"
    if len(code) > size:
        raise Refusal("error", "the injected code outgrew its page")
    inferior.write_memory(page, code)
    queued = call(worker, at["add_pending_call"], [at["run_simple_string"], page], return_to)
    if queued & 0xFFFFFFFF:
        raise Refusal("error", "Python's pending-call queue is full; try again")
    nudged = wake(main)
    return {
        "status": "queued",
        "page": [page, size],
        "nudged_main": nudged,
        "thread": worker.ptid[1],
        "threads": len(threads),
    }


def main():
    request = json.loads(os.environ["DSPY_TOP_INJECT"])
    try:
        outcome = nudge() if request.get("nudge") else inject(request)
    except Refusal as refusal:
        outcome = {"status": refusal.args[0], "message": refusal.args[1]}
    except gdb.error as exc:
        outcome = {"status": "error", "message": str(exc)}
    try:
        gdb.execute("detach", to_string=True)
    except gdb.error:
        pass
    print("DSPY_TOP_GDB " + json.dumps(outcome), flush=True)
