#include "sink/outputs.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "common/state_dir.h"
#include "common/log.h"
#include "kernels/kernel.h"

namespace taskfarm::sink {

bool job_has_outputs(const v1::JobSpec& spec) {
  if (spec.keep_output()) return true;
  const auto& builtins = kernels::KernelCatalog::builtins();
  for (const auto& t : spec.tasks()) {
    if (t.kernel() == "exec" || builtins.find(t.kernel()) == nullptr) return true;
    if (t.params().kind_case() != google::protobuf::Value::KIND_NOT_SET) return true;
  }
  return false;
}

JobOutputs::JobOutputs(const std::filesystem::path& results_dir, uint64_t job_id,
                       const v1::JobSpec& spec, std::optional<uint64_t> keep_index_bytes)
    : dir_(results_dir / fmt::format("{:016x}", job_id)) {
  for (const auto& t : spec.tasks()) {
    try {
      sweeps_.push_back(Sweep::parse(t.params(), UINT32_MAX));
    } catch (const std::exception&) {
      sweeps_.emplace_back();  // the ventilator checked it; an odd one just has no params here
    }
    kernels_.push_back(t.kernel());
  }
  std::error_code ec;
  std::filesystem::create_directories(dir_ / "outputs", ec);
  if (ec) {
    log::error("cannot create {}: {}; this job's outputs are dropped", (dir_ / "outputs").string(),
               ec.message());
    return;
  }
  const auto index = dir_ / "index.jsonl";
  const uint64_t size = std::filesystem::file_size(index, ec);
  index_bytes_ = ec ? 0 : size;
  if (keep_index_bytes && !ec && size > *keep_index_bytes) {
    std::filesystem::resize_file(index, *keep_index_bytes, ec);
    if (ec) log::error("cannot cut {} to {} bytes: {}", index.string(), *keep_index_bytes, ec.message());
    index_bytes_ = *keep_index_bytes;
  }
  remove_stray_temporaries(dir_ / "outputs");
  index_.open(index, std::ios::app | std::ios::binary);
  if (!index_) log::error("cannot write {}", index.string());
}

void JobOutputs::record(const v1::Result& r, const std::string& worker, int entry,
                        uint64_t index) {
  nlohmann::ordered_json line;
  line["task_id"] = r.task_id();
  line["entry"] = entry;
  line["index"] = index;
  line["kernel"] = entry >= 0 && entry < static_cast<int>(kernels_.size()) ? kernels_[entry] : "";
  line["status"] = r.status() == v1::STATUS_OK ? "ok" : "failed";
  line["attempt"] = r.attempt();
  line["worker"] = worker;
  line["bytes"] = r.output().size();
  line["checksum"] = fmt::format("{:016x}", r.checksum());
  line["value"] = r.value();
  if (entry >= 0 && entry < static_cast<int>(sweeps_.size()) && !sweeps_[entry].empty() &&
      index < sweeps_[entry].points()) {
    nlohmann::ordered_json params = nlohmann::ordered_json::object();
    for (const auto& [k, v] : sweeps_[entry].point(index)) params[k] = v;
    line["params"] = std::move(params);
  }
  if (!r.output().empty()) {
    const auto name = std::to_string(r.task_id());
    const auto tmp = dir_ / "outputs" / ("." + name + ".tmp");
    bool ok = false;
    if (FILE* f = std::fopen(tmp.c_str(), "wb")) {
      ok = std::fwrite(r.output().data(), 1, r.output().size(), f) == r.output().size();
      ok = std::fclose(f) == 0 && ok;
    }
    std::error_code ec;
    if (ok) std::filesystem::rename(tmp, dir_ / "outputs" / name, ec);
    if (!ok || ec) {
      ++failed_writes_;
      std::filesystem::remove(tmp, ec);
      log::error("cannot write the output of task {} in {}", r.task_id(), dir_.string());
    } else {
      line["output"] = "outputs/" + name;
    }
  }
  if (r.status() != v1::STATUS_OK) line["error"] = r.error();
  // Invalid UTF-8 from a peer (an error text, a worker id) is replaced, never a throw.
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  index_ << text << '\n';
  index_bytes_ += text.size() + 1;
}

void JobOutputs::flush() {
  if (index_.is_open()) index_.flush();
}

bool read_outputs(const std::filesystem::path& results_dir, uint64_t job_id, uint64_t offset,
                  uint64_t max_bytes, v1::ResultsReply& reply) {
  const auto dir = results_dir / fmt::format("{:016x}", job_id);
  std::ifstream index(dir / "index.jsonl", std::ios::binary);
  if (!index) return false;
  index.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(index.tellg());
  if (offset > size) offset = size;
  index.seekg(static_cast<std::streamoff>(offset));
  uint64_t bytes = 0;
  std::string line;
  while (bytes < max_bytes || reply.items_size() == 0) {
    const auto at = static_cast<uint64_t>(index.tellg());
    if (!std::getline(index, line)) break;
    if (index.eof()) break;  // a line still being written: next time
    auto* item = reply.add_items();
    item->set_index_line(line);
    const auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("output") && parsed["output"].is_string()) {
      const std::string rel = parsed["output"].get<std::string>();
      // Only names this sink writes: outputs/<digits>.
      if (rel.rfind("outputs/", 0) == 0 &&
          rel.find_first_not_of("0123456789", 8) == std::string::npos && rel.size() > 8) {
        std::ifstream out(dir / rel, std::ios::binary);
        std::string data((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
        bytes += data.size();
        item->set_output(std::move(data));
      }
    }
    offset = at + line.size() + 1;
  }
  reply.set_next_offset(offset);
  return true;
}

}  // namespace taskfarm::sink
