# cimport-only declarations of the socket calls the C-level loops use.
from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct timespec:
        long tv_sec
        long tv_nsec
    int recvmmsg(int fd, mmsghdr* vmessages, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* vmessages, unsigned int vlen, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t alen)
    ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr, socklen_t* alen)
    int MSG_DONTWAIT
    int MSG_WAITFORONE
    int MSG_NOSIGNAL
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t alen)
    int accept4(int fd, sockaddr* addr, socklen_t* alen, int flags)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t vlen)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* vlen)
    int SOCK_STREAM
    int SOCK_NONBLOCK
    int SOCK_CLOEXEC
    int SOL_SOCKET
    int SO_ERROR

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINTR

cdef extern from "<time.h>" nogil:
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLOUT
