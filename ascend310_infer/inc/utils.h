/**
 * Small file-system helpers for the Ascend 310 inference program.
 *
 * POSIX-only (dirent/stat/realpath) on purpose: the GCC 7.x toolchains that
 * ship with the Ascend CANN packages need -lstdc++fs for <filesystem>.
 */
#ifndef ASCEND310_INFER_INC_UTILS_H_
#define ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <string>
#include <vector>

namespace infer_utils {

// Absolute, symlink-resolved path; empty string if `path` does not exist.
std::string RealPath(const std::string &path);

bool IsDirectory(const std::string &path);

// Full paths of the regular files ending in ".bin" directly inside `dir`,
// sorted by file name. Empty if `dir` cannot be read or has none.
std::vector<std::string> ListBinFiles(const std::string &dir);

// File name without directory and without its last extension:
// "/a/b/img_001.bin" -> "img_001".
std::string FileStem(const std::string &path);

// Reads the whole file into `data`; false (with `data` cleared) on error.
bool ReadFile(const std::string &path, std::vector<char> *data);

// Writes `size` bytes to `path`, replacing any existing file.
bool WriteFile(const std::string &path, const void *data, size_t size);

// Creates `path` and any missing parents (like `mkdir -p`).
bool MakeDirs(const std::string &path);

}  // namespace infer_utils

#endif  // ASCEND310_INFER_INC_UTILS_H_
