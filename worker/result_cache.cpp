#include "worker/result_cache.h"

namespace taskfarm::worker {

void ResultCache::add(std::string encoded, uint64_t results) {
  if (max_results_ == 0 || max_bytes_ == 0) return;
  bytes_ += encoded.size();
  results_ += results;
  messages_.push_back(Message{std::move(encoded), results});
  while (!messages_.empty() && (results_ > max_results_ || bytes_ > max_bytes_)) {
    results_ -= messages_.front().results;
    bytes_ -= messages_.front().bytes.size();
    messages_.pop_front();
  }
}

size_t ResultCache::take(uint64_t job_id, std::unordered_set<uint64_t>& wanted,
                         google::protobuf::RepeatedPtrField<v1::Result>& out) const {
  size_t found = 0;
  v1::Envelope env;
  // Newest first: a task sent twice (a retry) counts with its last result.
  for (auto it = messages_.rbegin(); it != messages_.rend() && !wanted.empty(); ++it) {
    if (decode_into(it->bytes.data(), it->bytes.size(), env) || !env.has_results()) continue;
    for (auto& r : *env.mutable_results()->mutable_results()) {
      if (r.job_id() != job_id || wanted.erase(r.task_id()) == 0) continue;
      out.Add()->Swap(&r);
      ++found;
    }
  }
  return found;
}

}  // namespace taskfarm::worker
