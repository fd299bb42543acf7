/*
 * A fork server for dciodvfy, loaded with LD_PRELOAD.
 *
 * dciodvfy validates one file per process, and more than half of a run on a small
 * instance is process start-up: relocating a 12 MB executable and building its static
 * tables. This library lets the program start once, stops it just before main(), and
 * forks that initialised process for each file. Every child runs the program's own
 * main() on one file, exactly as a fresh process would, so its findings, output and
 * exit status are those of a plain run (tests compare the two).
 *
 * Without DICOMFLOW_FORK_SERVER in the environment the library does nothing.
 *
 * Protocol, on the server's stdin and stdout:
 *   request:  "<timeout seconds> <path>\n"
 *   response: "<wait status> <n>\n" followed by n bytes of the child's stdout and
 *             stderr, interleaved as written.
 * A child still running after its timeout gets SIGALRM (wait status: killed by 14).
 * The server exits when its stdin closes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int (*main_function)(int, char **, char **);
typedef int (*start_function)(main_function, int, char **, void (*)(void), void (*)(void),
                              void (*)(void), void *);

static main_function program_main;

static int write_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

/* One request line into line[], without its newline; 0 at end of input or on error. */
static int read_request(char *line, size_t size) {
    size_t used = 0;
    for (;;) {
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        if (c == '\n') break;
        if (used + 1 >= size) return 0; /* the client never sends such a path */
        line[used++] = c;
    }
    line[used] = '\0';
    return 1;
}

static int serve(int argc, char **argv, char **envp) {
    (void)argc;
    static char request[8192];
    static char buffer[65536];
    int output = memfd_create("dciodvfy-output", MFD_CLOEXEC);
    int response = dup(STDOUT_FILENO);
    if (output < 0 || response < 0) return 111;
    /* Replies go only to `response`; fd 1 is the child's, never the server's. */
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd < 0) return 111;
    dup2(null_fd, STDOUT_FILENO);
    while (read_request(request, sizeof request)) {
        char *path = strchr(request, ' ');
        if (path == NULL) return 112;
        *path++ = '\0';
        unsigned timeout = (unsigned)strtoul(request, NULL, 10);
        if (ftruncate(output, 0) != 0 || lseek(output, 0, SEEK_SET) != 0) return 113;
        pid_t child = fork();
        if (child < 0) return 114;
        if (child == 0) {
            dup2(null_fd, STDIN_FILENO);
            dup2(output, STDOUT_FILENO);
            dup2(output, STDERR_FILENO);
            close(response);
            close(null_fd);
            alarm(timeout);
            char *child_argv[] = {argv[0], path, NULL};
            exit(program_main(2, child_argv, envp));
        }
        int status = 0;
        while (waitpid(child, &status, 0) < 0) {
            if (errno != EINTR) return 115;
        }
        off_t length = lseek(output, 0, SEEK_END);
        if (length < 0) return 116;
        int header = snprintf(buffer, sizeof buffer, "%d %lld\n", status, (long long)length);
        if (write_all(response, buffer, (size_t)header) != 0) return 0;
        for (off_t offset = 0; offset < length;) {
            ssize_t n = pread(output, buffer, sizeof buffer, offset);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 117;
            if (write_all(response, buffer, (size_t)n) != 0) return 0;
            offset += n;
        }
    }
    return 0;
}

int __libc_start_main(main_function main, int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
    start_function start = (start_function)dlsym(RTLD_NEXT, "__libc_start_main");
    program_main = main;
    if (getenv("DICOMFLOW_FORK_SERVER") != NULL) main = serve;
    return start(main, argc, argv, init, fini, rtld_fini, stack_end);
}
