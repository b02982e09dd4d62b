/* What the built-in learned-policy modules share: finding the model file
 * that ships beside the module and loading it, and a growable input/output scratch for
 * model_infer. Header only (each module is its own shared object, built
 * against the C ABI alone). */
#ifndef MALV_POLICIES_MODULE_MODEL_H_
#define MALV_POLICIES_MODULE_MODEL_H_

/* dladdr needs _GNU_SOURCE, defined by the module before its first system
 * header. */
#include <dlfcn.h>
#include <malv/mlaas.h>
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

/* Loads a module's model through the host's inference service: the file the
 * environment variable `env` names when set, else `file` beside the module
 * that holds `anchor`; it must have in_dim inputs and out_dim outputs.
 * MALV_MLAAS_OK with *out set, or the error (nothing left loaded). */
static inline int malv_module_load_model(const malv_host_services* s, const void* anchor,
                                         const char* file, const char* env, size_t in_dim,
                                         size_t out_dim, malv_model* out) {
  char path[4096];
  const char* chosen = getenv(env);
  size_t got_in = 0, got_out = 0;
  int status;
  if (s == NULL || s->model_load == NULL || s->model_infer == NULL || s->model_dims == NULL ||
      s->model_release == NULL) {
    return MALV_MLAAS_ERR_INVALID;
  }
  if (chosen == NULL || chosen[0] == '\0') {
    if (malv_module_file_path(anchor, file, path, sizeof(path)) != 0) {
      return MALV_MLAAS_ERR_NOT_FOUND;
    }
    chosen = path;
  }
  status = s->model_load(s, chosen, out);
  if (status != MALV_MLAAS_OK) return status;
  status = s->model_dims(s, *out, &got_in, &got_out);
  if (status != MALV_MLAAS_OK || got_in != in_dim || got_out != out_dim) {
    s->model_release(s, *out);
    *out = 0;
    return status != MALV_MLAAS_OK ? status : MALV_MLAAS_ERR_INVALID;
  }
  return MALV_MLAAS_OK;
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
