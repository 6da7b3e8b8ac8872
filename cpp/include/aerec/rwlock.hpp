// A writer-preferring shared mutex for the networks: inference holds it shared (any number of
// callers at once), training and weight writes hold it exclusively.
//
// Why not std::shared_mutex: on glibc it is a reader-preferring pthread rwlock, so a stream of
// overlapping inference calls (a busy server) starves a waiting train_epoch forever. Here a
// waiting writer stops new readers from entering; the readers already inside finish, the writer
// runs, then the readers continue. Not re-entrant: a thread holding it shared must not take it
// again (a writer waiting in between would deadlock both); the networks never nest.
// Meets the SharedMutex requirements, so std::shared_lock / std::unique_lock work with it.
#pragma once
#include <condition_variable>
#include <mutex>

namespace aerec::cpu {

class SharedMutex {
 public:
  void lock() {
    std::unique_lock<std::mutex> g(m_);
    ++writers_waiting_;
    cv_.wait(g, [&] { return !writer_ && readers_ == 0; });
    --writers_waiting_;
    writer_ = true;
  }
  bool try_lock() {
    std::lock_guard<std::mutex> g(m_);
    if (writer_ || readers_ != 0) return false;
    writer_ = true;
    return true;
  }
  void unlock() {
    {
      std::lock_guard<std::mutex> g(m_);
      writer_ = false;
    }
    cv_.notify_all();
  }
  void lock_shared() {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return !writer_ && writers_waiting_ == 0; });
    ++readers_;
  }
  bool try_lock_shared() {
    std::lock_guard<std::mutex> g(m_);
    if (writer_ || writers_waiting_ != 0) return false;
    ++readers_;
    return true;
  }
  void unlock_shared() {
    bool last;
    {
      std::lock_guard<std::mutex> g(m_);
      last = --readers_ == 0;
    }
    if (last) cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int readers_ = 0, writers_waiting_ = 0;
  bool writer_ = false;
};

}  // namespace aerec::cpu
