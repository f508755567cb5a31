# assets.cmake -- embeds the files under web/ into the static library
# `tagarela_assets`, which implements src/assets.h.
#
# Include it from the top-level CMakeLists.txt and link the library:
#   include(cmake/assets.cmake)
#   target_link_libraries(tagarela PRIVATE tagarela_assets)
#
# tools/embed.c is built as a host tool and run at build time; the C file it
# writes is regenerated whenever a file under web/ changes, and the list of
# files is globbed again (CONFIGURE_DEPENDS) when one is added or removed.
# Every file under web/ is served at its path below web/ ("web/app.js" is
# "/app.js"), except hidden files and editor leftovers.

get_filename_component(TAGARELA_ASSETS_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(TAGARELA_WEB_DIR "${TAGARELA_ASSETS_ROOT}/web")

add_executable(tagarela_embed "${TAGARELA_ASSETS_ROOT}/tools/embed.c")
set_target_properties(tagarela_embed PROPERTIES
  C_STANDARD 11
  C_STANDARD_REQUIRED ON
  C_EXTENSIONS OFF)

file(GLOB_RECURSE TAGARELA_WEB_FILES CONFIGURE_DEPENDS LIST_DIRECTORIES false
  RELATIVE "${TAGARELA_WEB_DIR}" "${TAGARELA_WEB_DIR}/*")
list(SORT TAGARELA_WEB_FILES)

set(TAGARELA_EMBED_ARGS)
set(TAGARELA_EMBED_DEPS)
foreach(rel IN LISTS TAGARELA_WEB_FILES)
  get_filename_component(base "${rel}" NAME)
  if(base MATCHES "^\\." OR base MATCHES "~$" OR base MATCHES "\\.(swp|swo|tmp|orig|rej)$"
     OR rel MATCHES "(^|/)\\.")
    continue()
  endif()
  list(APPEND TAGARELA_EMBED_ARGS "/${rel}=${TAGARELA_WEB_DIR}/${rel}")
  list(APPEND TAGARELA_EMBED_DEPS "${TAGARELA_WEB_DIR}/${rel}")
endforeach()

if(NOT TAGARELA_EMBED_DEPS)
  message(WARNING "tagarela: no files under ${TAGARELA_WEB_DIR}; the web page will be empty")
endif()

set(TAGARELA_ASSETS_C "${CMAKE_BINARY_DIR}/generated/tagarela_assets.c")
file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/generated")

add_custom_command(
  OUTPUT "${TAGARELA_ASSETS_C}"
  COMMAND tagarela_embed "${TAGARELA_ASSETS_C}" ${TAGARELA_EMBED_ARGS}
  DEPENDS tagarela_embed ${TAGARELA_EMBED_DEPS} "${CMAKE_CURRENT_LIST_FILE}"
  COMMENT "Embedding the web page (${TAGARELA_WEB_DIR})"
  VERBATIM)

add_library(tagarela_assets STATIC "${TAGARELA_ASSETS_C}")
target_include_directories(tagarela_assets PUBLIC "${TAGARELA_ASSETS_ROOT}/src/serve")
set_target_properties(tagarela_assets PROPERTIES
  C_STANDARD 11
  C_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
