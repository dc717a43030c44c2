{
  "targets": [
    {
      "target_name": "vrun_native",
      "sources": ["src/addon.cc", "src/errno_error.cc", "src/kvm_system.cc", "src/fs_ops.cc", "src/new_files.cc", "src/fd_passing.cc", "src/process_ops.cc", "src/guest_ram.cc", "src/guest_ram_napi.cc", "src/vcpu.cc", "src/vcpu_seccomp.cc", "src/eventfd_watch.cc", "src/kvm_vm.cc", "src/vhost_user_socket.cc", "src/tap.cc", "src/tap_poll.cc", "src/idmap.cc", "src/netns_socket.cc", "src/tap_attach.cc", "src/netlink_snapshot.cc", "src/vmm_seccomp.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror", "-fexceptions"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    },
    {
      "target_name": "vrun-jailer",
      "type": "executable",
      "sources": ["jailer/vrun-jailer.cc"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    }
  ]
}
