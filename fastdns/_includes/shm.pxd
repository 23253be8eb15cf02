# cimport-only declarations: POSIX shared memory and process helpers.
from posix.types cimport off_t, mode_t, pid_t

cdef extern from "<sys/mman.h>" nogil:
    int shm_open(const char* name, int oflag, mode_t mode)
    int shm_unlink(const char* name)
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset)
    int munmap(void* addr, size_t length)
    int PROT_READ
    int PROT_WRITE
    int MAP_SHARED
    void* MAP_FAILED

cdef extern from "<sys/stat.h>" nogil:
    struct stat:
        off_t st_size
    int fstat(int fd, stat* buf)

cdef extern from "<fcntl.h>" nogil:
    int O_RDWR
    int O_CREAT
    int O_EXCL
    int posix_fallocate(int fd, off_t offset, off_t length)

cdef extern from "<unistd.h>" nogil:
    int ftruncate(int fd, off_t length)
    int close(int fd)
    pid_t getpid()

cdef extern from "<signal.h>" nogil:
    int kill(pid_t pid, int sig)
