/* What the built-in learned-policy modules share: finding the model file
 * that ships beside the module, and a growable input/output scratch for
 * model_infer. Header only (each module is its own shared object, built
 * against the C ABI alone). */
#ifndef MALV_POLICIES_MODULE_MODEL_H_
#define MALV_POLICIES_MODULE_MODEL_H_

/* dladdr needs _GNU_SOURCE, defined by the module before its first system
 * header. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* `file` in the directory of the module that holds `anchor` (any object of
 * that module), into path; 0 on success. */
static inline int malv_module_file_path(const void* anchor, const char* file, char* path,
                                        size_t size) {
  Dl_info info;
  const char* slash;
  size_t dir, len = strlen(file);
  if (dladdr(anchor, &info) == 0 || info.dli_fname == NULL) return -1;
  slash = strrchr(info.dli_fname, '/');
  dir = slash == NULL ? 0 : (size_t)(slash - info.dli_fname) + 1;
  if (dir + len + 1 > size) return -1;
  memcpy(path, info.dli_fname, dir);
  memcpy(path + dir, file, len + 1);
  return 0;
}

/* Rows of model input and output, grown on demand. */
typedef struct malv_model_scratch {
  float* in;  /* capacity rows of in_dim */
  float* out; /* capacity rows of out_dim */
  size_t capacity;
} malv_model_scratch;

/* Room for n rows; 0 on success. */
static inline int malv_model_scratch_reserve(malv_model_scratch* s, size_t n, size_t in_dim,
                                             size_t out_dim) {
  float* in;
  float* out;
  if (n <= s->capacity) return 0;
  in = (float*)realloc(s->in, n * in_dim * sizeof(float));
  if (in == NULL) return -1;
  s->in = in;
  out = (float*)realloc(s->out, n * out_dim * sizeof(float));
  if (out == NULL) return -1;
  s->out = out;
  s->capacity = n;
  return 0;
}

static inline void malv_model_scratch_free(malv_model_scratch* s) {
  free(s->in);
  free(s->out);
  s->in = NULL;
  s->out = NULL;
  s->capacity = 0;
}

#endif /* MALV_POLICIES_MODULE_MODEL_H_ */
