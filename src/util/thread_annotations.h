// Clang thread-safety annotations: say in the code which mutex guards which
// field and which functions need it held, so `make thread-safety` (clang
// -Wthread-safety -Werror) checks every access instead of a comment promising
// it. Under any other compiler (the normal g++ build) they expand to nothing.
//
//   Mutex mu_;
//   int count_ GUARDED_BY(mu_);             // read or written only with mu_ held
//   Blob* head_ PT_GUARDED_BY(mu_);         // the pointee is guarded, not the pointer
//   void bump_locked() REQUIRES(mu_);       // the caller holds mu_
//   void bump() EXCLUDES(mu_);              // the caller must not hold mu_ (it takes it)
//
// The annotated types are in src/util/mutex.h (Mutex, MutexLock, CondVar);
// std::mutex and std::lock_guard carry no annotations in libstdc++, so
// clang cannot see what they lock. The meaning of each attribute:
// https://clang.llvm.org/docs/ThreadSafetyAnalysis.html
//
// Thread-safety: macros only.
#pragma once

#if defined(__clang__)
#define PORTALBD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PORTALBD_THREAD_ANNOTATION(x)
#endif

// A type that is a lock (a "capability"); the string names it in diagnostics.
#define CAPABILITY(name) PORTALBD_THREAD_ANNOTATION(capability(name))

// An RAII type that holds a capability from construction to destruction.
#define SCOPED_CAPABILITY PORTALBD_THREAD_ANNOTATION(scoped_lockable)

// A field that may be read or written only while the given mutex is held.
#define GUARDED_BY(mu) PORTALBD_THREAD_ANNOTATION(guarded_by(mu))

// A pointer (or smart pointer) whose pointee is guarded by the given mutex.
#define PT_GUARDED_BY(mu) PORTALBD_THREAD_ANNOTATION(pt_guarded_by(mu))

// The caller must hold the mutex(es), exclusively or (_SHARED) at least shared.
#define REQUIRES(...) PORTALBD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) PORTALBD_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))

// The function takes the mutex (held on return) / gives it up (not held on
// return). With no argument on a member of a CAPABILITY or SCOPED_CAPABILITY
// type, the mutex is the object itself.
#define ACQUIRE(...) PORTALBD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) PORTALBD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))

// The function tries to take the mutex; it is held when the function returns
// the first argument (true or false).
#define TRY_ACQUIRE(...) PORTALBD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))

// The caller must not hold the mutex (the function takes it itself).
#define EXCLUDES(...) PORTALBD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// Tells the analysis the mutex is held from here on (a check it cannot make
// itself, e.g. in a callback that runs under the lock).
#define ASSERT_CAPABILITY(x) PORTALBD_THREAD_ANNOTATION(assert_capability(x))

// The function returns a reference to the given mutex (an accessor).
#define RETURN_CAPABILITY(x) PORTALBD_THREAD_ANNOTATION(lock_returned(x))

// Turns the analysis off for one function. Say why beside each use.
#define NO_THREAD_SAFETY_ANALYSIS PORTALBD_THREAD_ANNOTATION(no_thread_safety_analysis)
