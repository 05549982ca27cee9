# Linux system interfaces the media engine uses, declared once for all native modules:
# epoll(7), eventfd(2), timerfd_create(2), recvmmsg(2)/sendmmsg(2), pthread mutexes/conditions.
# Python.h (included first by Cython) defines _GNU_SOURCE, which recvmmsg/sendmmsg need.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

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

    int recvmmsg(int sockfd, mmsghdr* msgvec, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int sockfd, mmsghdr* msgvec, unsigned int vlen, int flags)

    enum:
        AF_INET
        AF_INET6
        MSG_DONTWAIT
        MSG_TRUNC

    # Ancillary data (cmsg(3)): the kernel's arrival timestamps (socket(7) SO_TIMESTAMPNS).
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type

    cmsghdr* CMSG_FIRSTHDR(msghdr* msgh)
    cmsghdr* CMSG_NXTHDR(msghdr* msgh, cmsghdr* cmsg)
    unsigned char* CMSG_DATA(cmsghdr* cmsg)
    int setsockopt(int sockfd, int level, int optname, const void* optval, socklen_t optlen)

    enum:
        SOL_SOCKET
        SO_TIMESTAMPNS
        SCM_TIMESTAMPNS


cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr

    struct in6_addr:
        uint8_t s6_addr[16]

    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr

    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id


cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)


cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)

    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC


cdef extern from "<sys/timerfd.h>" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value

    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new_value, itimerspec* old_value)

    enum:
        TFD_NONBLOCK
        TFD_CLOEXEC


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass

    ctypedef struct pthread_cond_t:
        pass

    int pthread_mutex_init(pthread_mutex_t* mutex, const void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* mutex)
    int pthread_mutex_lock(pthread_mutex_t* mutex)
    int pthread_mutex_unlock(pthread_mutex_t* mutex)
    int pthread_cond_init(pthread_cond_t* cond, const void* attr)
    int pthread_cond_destroy(pthread_cond_t* cond)
    int pthread_cond_wait(pthread_cond_t* cond, pthread_mutex_t* mutex)
    int pthread_cond_broadcast(pthread_cond_t* cond)


cdef extern from * nogil:
    # GCC/Clang atomic built-ins (the engine reads a counter another thread writes under a lock).
    int atomic_load_int "__atomic_load_n"(int* ptr, int memorder)

    enum:
        __ATOMIC_ACQUIRE


cdef extern from "<unistd.h>" nogil:
    int gettid()     # glibc >= 2.30


cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
