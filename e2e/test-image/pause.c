/* The e2e test image's only program: sleeps until SIGTERM or SIGINT, then exits 0, so a pod
 * running it stops at once when deleted. Built static with musl-gcc by e2e/src/kind.rs. */
#include <signal.h>
#include <unistd.h>

static void stop(int signal) {
    (void)signal;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) {
        pause();
    }
}
