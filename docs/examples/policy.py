"""A policy for one process, and the cleanup report the parent reads."""

import atexit

import safeproc.stdlib as mp


def work():
    atexit.register(print, "child: atexit handler ran", flush=True)


if __name__ == "__main__":
    policy = mp.CleanupPolicy(timeout=5.0, report=True)
    p = mp.Process(target=work, cleanup=policy)
    p.start()
    p.join()
    print("exit code", p.exitcode)
    report = p.cleanup_report
    print("atexit handlers run:", report.step("atexit").count)
    print("deadline expired:", report.deadline_expired)
    print(report)
